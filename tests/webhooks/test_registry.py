"""The action registry is the one list of webhook actions: the docs' Webhook reference table, the settings page and
webhook_urls agree with it."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

from webhooks.actions import ACTIONS

pytestmark = pytest.mark.django_db


def reference_table_rows() -> list[tuple[str, str]]:
    """(action, what happens) for each row of the "The actions at a glance" table in docs/webhooks.md."""
    readme = (Path(settings.BASE_DIR) / "docs" / "webhooks.md").read_text()
    section = readme.split("## The actions at a glance", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `\?wpf_action=(\w+)` \| ([^|]+) \|", section, flags=re.MULTILINE)


def test_the_reference_table_has_one_row_per_registered_action():
    rows = reference_table_rows()
    assert sorted(action for action, _ in rows) == sorted(ACTIONS)


def test_the_reference_says_which_actions_touch_nobody():
    for action, what_happens in reference_table_rows():
        assert ("touches nobody" in what_happens) == (not ACTIONS[action].touches_user), action


def test_webhook_urls_lists_every_action(capsys):
    call_command("webhook_urls", "--base-url", "https://mydomain.com")
    printed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert printed == list(ACTIONS)


def test_the_settings_page_lists_every_action(admin_client):
    page = admin_client.get(reverse("admin:settings_app_webhooksettings_change")).content.decode()
    for action in ACTIONS:
        assert f"wpf_action={action}&amp;access_key=" in page


def test_an_unknown_action_names_the_registrys(hook):
    response = hook("delete_everyone")
    assert response.status_code == 400
    assert response.json()["detail"] == "Unknown action 'delete_everyone': use one of update_tags, update, add, test."
