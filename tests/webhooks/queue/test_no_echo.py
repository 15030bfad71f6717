"""Queued webhooks send nothing back to Customer.io either: plain adds created in bulk (Return Password on), an
update and an add of an existing person processed one by one, with the names mapped both ways."""

import pytest

from settings_app import freshness
from settings_app.models import FieldMapping
from users.models import OutboxEntry, User
from webhooks.models import WebhookDelivery

from ..conftest import make_user, set_settings
from .workers import queued, run_worker_until_idle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_queued_adds_and_updates_send_nothing_back(client, worker_env, cio_emulator):
    FieldMapping.objects.filter(user_field__in=["first_name", "last_name", "email"]).update(direction="both")
    freshness.changed("field_mappings")
    people = [f"new{n}@example.com" for n in range(5)]
    cio_emulator.load({"customers": [{"email": email, "attributes": {"first_name": "New"}} for email in people]})
    set_settings(return_password=True, return_password_field="site_password")
    set_settings(push_profiles=False)
    make_user("ann@example.com")  # made on the site before: nothing waits for her
    set_settings(push_profiles=True)
    for email in people:
        queued(client, "add", email=email)
    queued(client, "update", email="ann@example.com")
    queued(client, "add", email="ann@example.com")

    run_worker_until_idle(worker_env)

    assert WebhookDelivery.objects.filter(status="succeeded").count() == len(people) + 2
    assert User.objects.get(email="ann@example.com").first_name == "Ann"
    assert not OutboxEntry.objects.exists()
    assert cio_emulator.requests("/api/v2/batch") == []
