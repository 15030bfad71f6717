"""What accepting a webhook costs the database, pinned: every statement and commit here is throughput a broadcast
journey notices (bench/accept.py measures it). Real transactions (no test-wide one), so BEGIN and COMMIT count."""

import contextlib
import re
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django_tasks_db.models import DBTaskResult

from settings_app import freshness
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Ledger:
    """The statements one request sent, as "VERB table" (BEGIN, COMMIT, SAVEPOINT as themselves), and its commits:
    COMMITs plus writes run outside a transaction (each commits on its own)."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0


def _short(sql: str) -> str:
    verb = sql.split(None, 1)[0].upper()
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return verb
    if verb == "WITH":  # a data-modifying WITH: the tables it inserts into
        return "INSERT " + ", ".join(re.findall(r'INSERT INTO "?(\w+)"?', sql, re.IGNORECASE))
    table = re.search(r'(?:INTO|FROM|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else '?'}"


@contextlib.contextmanager
def ledger(monkeypatch):
    record = Ledger()
    real_set_autocommit, real_commit = connection.set_autocommit, connection.commit

    def set_autocommit(autocommit, *args, **kwargs):
        if not autocommit:
            record.statements.append("BEGIN")
        return real_set_autocommit(autocommit, *args, **kwargs)

    def commit():
        record.statements.append("COMMIT")
        record.commits += 1
        return real_commit()

    def wrapper(execute, sql, params, many, context):
        if not sql.lstrip().upper().startswith("BEGIN"):  # SQLite's own BEGIN: counted by set_autocommit above
            statement = _short(sql)
            record.statements.append(statement)
            if not connection.in_atomic_block and not statement.startswith("SELECT"):
                record.commits += 1
        return execute(sql, params, many, context)

    monkeypatch.setattr(connection, "set_autocommit", set_autocommit)
    monkeypatch.setattr(connection, "commit", commit)
    with connection.execute_wrapper(wrapper):
        yield record


@pytest.fixture
def steady(hook, monkeypatch):
    """A process that has served a webhook (settings and field mappings held) within the second that follows."""
    assert hook("test").status_code == 200
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)


def test_a_queued_accept_is_one_commit_with_no_update(hook, steady, monkeypatch):
    with ledger(monkeypatch) as spent:
        response = hook(
            "update_tags", email="nobody@example.com", headers={"x-cio-delivery-id": "d-1"}, **{"async": "true"}
        )
    assert response.status_code == 200 and response.json()["status"] == "queued"
    if connection.vendor == "postgresql":
        # One statement writes both rows (webhooks.queue.task_rows): one round trip, atomic on its own.
        assert spent.statements == ["INSERT webhooks_webhookdelivery, django_tasks_database_dbtaskresult"]
    else:
        assert spent.statements == [
            "BEGIN",
            "INSERT webhooks_webhookdelivery",
            "INSERT django_tasks_database_dbtaskresult",
            "COMMIT",
        ]
    assert spent.commits == 1
    # The delivery names its task from its INSERT, and the task names the delivery.
    delivery = WebhookDelivery.objects.get(pk=response.json()["delivery_id"])
    task = DBTaskResult.objects.get(pk=delivery.task_id)
    assert task.args_kwargs == {"args": [delivery.pk], "kwargs": {}}
    assert task.status == "READY"


def test_test_is_one_insert(hook, steady, monkeypatch):
    with ledger(monkeypatch) as spent:
        response = hook("test", headers={"x-cio-delivery-id": "t-1"})
    assert response.json() == {"status": "ok", "action": "test"}
    assert spent.statements == ["INSERT webhooks_webhookdelivery"]
    assert spent.commits == 1
    delivery = WebhookDelivery.objects.get(cio_delivery_id="t-1")
    assert (delivery.status, delivery.http_status, delivery.result, delivery.attempts) == (
        "succeeded",
        200,
        {"status": "ok", "action": "test"},
        1,
    )


def test_a_retried_test_is_answered_with_the_first_result(hook, steady):
    first = hook("test", headers={"x-cio-delivery-id": "t-2"}).json()
    again = hook("test", headers={"x-cio-delivery-id": "t-2"})
    assert again.status_code == 200
    assert again.json() == {**first, "duplicate": True}
    assert WebhookDelivery.objects.get(cio_delivery_id="t-2").attempts == 2


def test_a_retry_of_a_failed_queued_delivery_is_queued_again_with_a_new_task(hook, steady):
    headers = {"x-cio-delivery-id": "d-2"}
    first = hook("update_tags", headers=headers, **{"async": "true"}).json()
    WebhookDelivery.objects.filter(pk=first["delivery_id"]).update(status="failed")
    old_task = WebhookDelivery.objects.get(pk=first["delivery_id"]).task_id
    again = hook("update_tags", headers=headers, **{"async": "true"})
    assert again.json() == {"status": "queued", "delivery_id": first["delivery_id"]}
    delivery = WebhookDelivery.objects.get(pk=first["delivery_id"])
    assert delivery.status == "queued" and delivery.task_id != old_task
    assert DBTaskResult.objects.get(pk=delivery.task_id).args_kwargs["args"] == [delivery.pk]
    assert DBTaskResult.objects.count() == 2
