"""The webhook deliveries' admin pages, and what the admin index shows of the task backend."""

import re

import pytest
from django.urls import reverse

from webhooks.models import WebhookDelivery
from webhooks.tasks import process_delivery

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/webhooks/webhookdelivery/"
LONG_EMAIL = "a.very.long.local.part.for.testing.widths@subdomain.example.com"


def delivery(**fields):
    defaults = {"action": "add", "contact": "ann@example.com", "status": WebhookDelivery.Status.SUCCEEDED}
    return WebhookDelivery.objects.create(**{**defaults, **fields})


def column_headers(page: str) -> list[str]:
    table = page[page.index('id="result_list"') :]
    header = table[: table.index("</thead>")]
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<th[^>]*>(.*?)</th>", header, re.S)][1:]


def cell(page: str, column: str) -> str:
    """The text shown in the first row's cell of a column."""
    match = re.search(rf'<td class="field-{column}[^"]*">(.*?)</td>', page, re.S)
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_delivery_list_has_narrow_columns(admin_client):
    long_error = "upstream_error: Customer.io answered 502 Bad Gateway after 4 retries " * 3
    delivery(contact=LONG_EMAIL, status=WebhookDelivery.Status.FAILED, http_status=502, error=long_error)

    page = admin_client.get(CHANGELIST).text

    # Measured in Chromium at 1,400 px: the table's content is as wide as its box (736 px), where the nine columns
    # it had before needed 1,045 px.
    assert column_headers(page) == ["Received", "Action", "Contact", "Status", "Tries", "Error"]
    assert cell(page, "short_contact") == LONG_EMAIL[:27] + "…"
    assert f'title="{LONG_EMAIL}"' in page  # the whole contact in the tooltip
    assert cell(page, "outcome") == "Failed 502"
    assert len(cell(page, "short_error")) == 36
    assert cell(page, "short_error").endswith("…")


def test_a_waiting_delivery_shows_no_earlier_http_answer(admin_client):
    delivery(status=WebhookDelivery.Status.QUEUED, http_status=200)  # replayed after succeeding

    assert cell(admin_client.get(CHANGELIST).text, "outcome") == "Queued"


def test_the_action_filter_lists_only_real_actions(admin_client):
    delivery(action="add", contact="ann@example.com")
    delivery(action="update", contact="bob@example.com")
    delivery(action="bogus", contact="eve@example.com", status=WebhookDelivery.Status.INVALID, http_status=400)

    page = admin_client.get(CHANGELIST).text
    filtered = admin_client.get(CHANGELIST, {"action": "add"}).text

    assert re.findall(r'href="\?action=([a-z_]+)"', page) == ["update_tags", "update", "add", "test"]
    assert "bogus" not in page.split('id="changelist-filter"')[1]
    assert "ann@example.com" in filtered
    assert "bob@example.com" not in filtered and "eve@example.com" not in filtered


def test_task_results_are_not_an_app_on_the_admin_index(admin_client):
    index = admin_client.get(reverse("admin:index")).text

    assert "Webhook deliveries" in index
    assert "Task Results" not in index and "Tasks Database Backend" not in index
    assert admin_client.get("/admin/django_tasks_database/dbtaskresult/").status_code == 404


def test_a_failed_task_shows_on_its_delivery_page(admin_client):
    from django_tasks_db.models import DBTaskResult

    queued = delivery(status=WebhookDelivery.Status.FAILED, http_status=500, error="worker_died: gave up")
    task = process_delivery.enqueue(queued.pk)
    queued.task_id = str(task.id)
    queued.save()
    DBTaskResult.objects.filter(pk=task.id).update(
        status="FAILED", exception_class_path="builtins.MemoryError", traceback="Traceback: the worker ran out"
    )

    page = admin_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[queued.pk])).text

    assert "Background task" in page
    assert "FAILED" in page
    assert "builtins.MemoryError" in page
    assert "<pre>Traceback: the worker ran out</pre>" in page
