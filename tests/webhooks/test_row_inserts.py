"""webhooks.row_inserts keeps each INSERT's text once compiled and prepares the values itself: what it sends must be
exactly what Django's compiler would have built for the same row, every time."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery

from users.models import User
from webhooks import row_inserts, task_rows
from webhooks.models import WebhookDelivery

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
    # psycopg's Jsonb wrappers compare by identity: compare what they hold.
    sql, params = statement
    return sql, tuple(getattr(p, "obj", p) for p in params)


@pytest.fixture
def user():
    return User.objects.create(username="ann", email="ann@example.com")


def _delivery(n, user):
    return WebhookDelivery(
        action="update_tags",
        contact=f"p{n}@example.com",
        contact_type="email",
        contact_key=f"email:p{n}@example.com",
        query={"wpf_action": "update_tags", "async": "true"},
        body={"email": f"p{n}@example.com", "tags": ["a", "b"], "user_pass": "********"},
        remote_ip="203.0.113.9",
        cio_delivery_id=f"d-{n}",
        dedup_key=f"delivery:d-{n}",
        status="succeeded",
        http_status=200,
        result={"status": "ok"},
        attempts=1,
        duration_ms=3,
        lease_expires_at=FROZEN,
        task_id="t",
        access_key_fingerprint="abc",
        user=user,
    )


@pytest.mark.parametrize("returning", [False, True])
def test_a_delivery_s_insert_is_the_compilers_on_every_call(returning, user):
    for n in range(3):  # the first call compiles, the next ones reuse the text
        ours = row_inserts.insert_sql("default", _delivery(n, user), returning=returning)
        assert _comparable(ours) == _comparable(_compiled_by_django(_delivery(n, user), returning=returning))


def test_a_task_row_with_an_expression_for_a_value_is_the_compilers_on_every_call():
    args = RawSQL("json_object()" if connection.vendor == "sqlite" else "'{}'::jsonb", ())  # noqa: S611
    for n in range(3):
        row = task_rows._task_row(f"00000000-0000-0000-0000-00000000000{n}", args)
        expected = _compiled_by_django(task_rows._task_row(f"00000000-0000-0000-0000-00000000000{n}", args))
        assert _comparable(row_inserts.insert_sql("default", row)) == _comparable(expected)


def test_insert_writes_the_row_and_gives_it_its_key(user):
    delivery = row_inserts.insert(_delivery(7, user))
    stored = WebhookDelivery.objects.get(pk=delivery.pk)
    assert (stored.contact, stored.body["tags"], stored.remote_ip, stored.received_at) == (
        "p7@example.com",
        ["a", "b"],
        "203.0.113.9",
        FROZEN,
    )
    another = row_inserts.insert(_delivery(8, user))
    assert another.pk != delivery.pk
    assert WebhookDelivery.objects.get(pk=another.pk).cio_delivery_id == "d-8"
    assert (stored.user, stored.status, delivery._state.adding) == (user, "succeeded", False)
