"""webhooks.row_inserts keeps each INSERT's text once compiled and prepares the values itself: what it sends must be
exactly what Django's compiler would have built for the same row, every time."""

import json
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery
from django_tasks_db.models import DBTaskResult

from users.models import User
from webhooks import row_inserts
from webhooks.models import WebhookDelivery
from webhooks.queue import task_rows

pytestmark = pytest.mark.django_db

FROZEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    """auto_now fields take the time at every preparation: frozen, two preparations of a row can be compared."""
    monkeypatch.setattr("django.utils.timezone.now", lambda: FROZEN)


def _compiled_by_django(row, *, returning=False):
    meta = row._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field and not f.generated]
    query = InsertQuery(type(row))
    query.insert_values(fields, [row])
    compiler = query.get_compiler(using="default")
    if returning:
        compiler.returning_fields = [meta.pk]
    ((sql, params),) = compiler.as_sql()
    return sql, tuple(params)


def _comparable(statement):
    # psycopg's Jsonb wrappers compare by identity: compare the JSON they write (1 == True in Python, not in JSON).
    sql, params = statement
    return sql, tuple(("json", json.dumps(p.obj)) if hasattr(p, "obj") else p for p in params)


@pytest.fixture
def user():
    return User.objects.create(username="ann", email="ann@example.com")


def _finished(n, user):
    """The fields of a delivery written with its outcome (a `test`, a synchronous processing's row)."""
    return {
        "action": "update_tags",
        "contact": f"p{n}@example.com",
        "contact_type": "email",
        "contact_key": f"email:p{n}@example.com",
        "query": {"wpf_action": "update_tags", "async": "true"},
        "body": {"email": f"p{n}@example.com", "tags": ["a", "b"], "user_pass": "********"},
        "remote_ip": "203.0.113.9",
        "cio_delivery_id": f"d-{n}",
        "dedup_key": f"delivery:d-{n}",
        "status": "succeeded",
        "http_status": 200,
        "result": {"status": "ok"},
        "attempts": 1,
        "duration_ms": 3,
        "lease_expires_at": FROZEN,
        "task_id": "t",
        "access_key_fingerprint": "abc",
        "user_id": user.pk,
    }


@pytest.mark.parametrize("returning", [False, True])
def test_a_finished_delivery_s_insert_is_the_compilers_for_every_row(returning, user):
    prepared = row_inserts.PreparedInsert(WebhookDelivery, returning=returning)
    for n in range(3):  # the first row compiles, the next ones reuse the statement
        ours = prepared.statement("default", _finished(n, user))
        assert _comparable(ours) == _comparable(
            _compiled_by_django(WebhookDelivery(**_finished(n, user)), returning=returning)
        )


def _queued(n):
    """The fields an accepted queued webhook sets (the view's, the claim's, the dedup key, the task's id)."""
    return {
        "action": "update_tags",
        "contact": f"p{n}@example.com",
        "contact_type": "email",
        "contact_key": f"email:p{n}@example.com",
        "query": {"wpf_action": "update_tags", "async": "true"},
        "body": {"email": f"p{n}@example.com", "n": [n, n % 2 == 0, n / 2]},
        "remote_ip": "2001:db8::1" if n % 2 else "203.0.113.9",
        "cio_delivery_id": f"d-{n}",
        "idempotency_key": "",
        "access_key_fingerprint": "abc",
        "status": "queued",
        "lease_expires_at": None,
        "dedup_key": f"delivery:d-{n}",
        "attempts": 0,
        "task_id": f"00000000-0000-0000-0000-00000000000{n}",
    }


@pytest.mark.parametrize("returning", [False, True])
def test_a_prepared_insert_is_the_compilers_for_every_row(returning):
    prepared = row_inserts.PreparedInsert(WebhookDelivery, returning=returning)
    for n in range(4):  # the first row compiles, the next ones reuse the statement and the fixed parameters
        expected = _compiled_by_django(WebhookDelivery(**_queued(n)), returning=returning)
        assert _comparable(prepared.statement("default", _queued(n))) == _comparable(expected)


def test_a_prepared_task_insert_with_an_expression_and_fixed_values_is_the_compilers():
    args = RawSQL("json_object()" if connection.vendor == "sqlite" else "'{}'::jsonb", ())  # noqa: S611
    fixed = {**task_rows._task_fields(), "args_kwargs": args}
    prepared = row_inserts.PreparedInsert(DBTaskResult, fixed=fixed)
    for n in range(3):
        task_id = f"00000000-0000-0000-0000-00000000000{n}"
        expected = _compiled_by_django(DBTaskResult(id=task_id, **fixed))
        assert _comparable(prepared.statement("default", {"id": task_id})) == _comparable(expected)


def test_rows_setting_other_fields_get_their_own_statement():
    prepared = row_inserts.PreparedInsert(WebhookDelivery)
    prepared.statement("default", _queued(1))
    fewer = {"action": "test", "dedup_key": "delivery:x", "status": "succeeded", "http_status": 200}
    expected = _compiled_by_django(WebhookDelivery(**fewer))
    assert _comparable(prepared.statement("default", fewer)) == _comparable(expected)


def test_a_prepared_insert_refuses_what_it_would_get_wrong():
    with pytest.raises(ValueError, match="no field nickname"):
        row_inserts.PreparedInsert(WebhookDelivery).statement("default", {"nickname": "x"})
    # A task row left to its uuid4 default would repeat the first row's id on every row.
    with pytest.raises(ValueError, match="id has a default that changes"):
        row_inserts.PreparedInsert(DBTaskResult).statement("default", {"priority": 1})


def test_insert_writes_the_row_and_gives_it_its_key(user):
    pk = row_inserts.insert(WebhookDelivery, _finished(7, user))
    stored = WebhookDelivery.objects.get(pk=pk)
    assert (stored.contact, stored.body["tags"], stored.remote_ip, stored.received_at) == (
        "p7@example.com",
        ["a", "b"],
        "203.0.113.9",
        FROZEN,
    )
    another = row_inserts.insert(WebhookDelivery, _finished(8, user))
    assert another != pk
    assert WebhookDelivery.objects.get(pk=another).cio_delivery_id == "d-8"
    assert (stored.user, stored.status) == (user, "succeeded")


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ({"n": 1}, {"n": True}),  # equal in Python, written 1 and true
        ({"n": 1}, {"n": 1.0}),  # equal in Python, written 1 and 1.0
        ([], {}),  # both empty, different JSON
        ("", None),  # an empty string is not NULL
    ],
)
def test_a_value_equal_to_the_first_rows_but_written_differently_is_written_as_given(user, first, then):
    """A row's own values are prepared for it: never taken from an earlier row they compare equal to."""
    prepared = row_inserts.PreparedInsert(WebhookDelivery, returning=True)
    prepared.statement("default", {**_finished(1, user), "result": first})
    expected = _compiled_by_django(WebhookDelivery(**{**_finished(2, user), "result": then}), returning=True)
    assert _comparable(prepared.statement("default", {**_finished(2, user), "result": then})) == _comparable(expected)
    pk = row_inserts.insert(WebhookDelivery, {**_finished(3, user), "result": then})
    with connection.cursor() as cursor:
        cursor.execute("SELECT CAST(result AS TEXT) FROM webhooks_webhookdelivery WHERE id = %s", [pk])
        (text,) = cursor.fetchone()
    assert (None if text is None else "".join(text.split())) == (
        None if then is None else json.dumps(then, separators=(",", ":"))
    )
