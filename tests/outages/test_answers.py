"""What each place a database failure can surface answers, in one process: the webhook's authentication (the settings
read), its accept INSERT, a synchronous processing's outcome, /healthz and the site's pages — 503 with Retry-After,
one log line for the outage, never a 500; and the Redis fallback's bookkeeping."""

import logging

import pytest
from django.db import OperationalError, connection
from django.test import Client

from settings_app import freshness
from settings_app.models import WebhookSettings
from webhooks import deliveries
from webhooks.intake import views
from webhooks.models import WebhookDelivery
from webhooks.outages import outage
from webhooks.queue import leases


def unavailable(*args, **kwargs):
    raise OperationalError("couldn't get a connection after 3.00 sec")


@pytest.fixture(autouse=True)
def no_outage_left():
    outage.forget()
    yield
    outage.forget()
    leases._abandoned.clear()


@pytest.fixture
def key(db):
    return WebhookSettings.load().access_key


def post(client, key, *, queued=True):
    suffix = "&async=true" if queued else ""
    return client.post(
        f"/?wpf_action=update_tags&access_key={key}{suffix}", {"email": "ann@example.com"}, "application/json"
    )


@pytest.mark.parametrize(
    ("where", "target", "queued"),
    [
        ("the settings read of authentication", (WebhookSettings, "cached"), True),
        ("the accept INSERT", (views, "open_queued"), True),
        ("the synchronous path's INSERT", (deliveries, "open_delivery"), False),
    ],
)
def test_the_webhook_answers_503_when_the_database_fails(client, key, monkeypatch, caplog, where, target, queued):
    monkeypatch.setattr(*target, unavailable)
    with caplog.at_level(logging.WARNING):
        answers = [post(client, key, queued=queued) for _ in range(3)]
    assert {answer.status_code for answer in answers} == {503}, where
    assert answers[0].json()["error"] == "database_unavailable"
    assert answers[0]["Retry-After"] == "5"
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(" (")[0] for r in lines] == ["The database is unavailable"]  # once, no traceback


@pytest.mark.parametrize("cut_off", ["after its processing", "during its processing"])
def test_a_synchronous_delivery_cut_off_is_settled_by_the_next_webhook(client, key, monkeypatch, cio_emulator, cut_off):
    """A webhook whose outcome could not be written (the database went away): the process's next webhook writes the
    outcome it reached — its effects are committed, it must not run twice — or, when the processing itself failed,
    puts the delivery back in the queue, with a task, rather than leaving it `processing` for its lease."""
    from tests.webhooks.conftest import FIXTURE, make_user

    cio_emulator.reset(FIXTURE)
    make_user()
    target = "record_outcome" if cut_off == "after its processing" else "run_action"
    monkeypatch.setattr(views.deliveries if target == "record_outcome" else views, target, unavailable)
    assert post(client, key, queued=False).status_code == 503
    monkeypatch.undo()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "processing"  # held by its lease: the process knows it was cut off
    assert leases.has_abandoned()
    assert post(client, WebhookSettings.load().access_key, queued=True).status_code == 200  # the next webhook
    assert not leases.has_abandoned()
    delivery.refresh_from_db()
    if cut_off == "after its processing":
        assert (delivery.status, delivery.http_status, delivery.result["status"]) == ("succeeded", 200, "ok")
        assert len(cio_emulator.requests("/v1/customers/")) == 1  # read once: not processed a second time
    else:
        assert (delivery.status, delivery.lease_expires_at) == ("retrying", None)
        assert delivery.task_id  # with a task: a worker processes it now, not when its lease runs out


def test_healthz_and_pages_answer_503_when_the_database_fails(db, monkeypatch, caplog):
    from webhooks import health

    monkeypatch.setattr(health, "queue_backlog", unavailable)
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.WARNING):
        assert client.get("/healthz").status_code == 503
        monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.load", unavailable)
        client.cookies["sessionid"] = "s" * 32
        page = client.get("/admin/")
    assert page.status_code == 503
    assert page["Retry-After"] == "5"
    assert b"Try again" in page.content
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["The database is unavailable"]


def test_a_new_connection_ends_the_outage_with_one_line(caplog):
    from django.db.backends.signals import connection_created

    with caplog.at_level(logging.WARNING):
        outage.met(OperationalError("gone"))
        outage.met(OperationalError("still gone"))
        connection_created.send(sender=type(connection), connection=connection)  # what Django sends on connecting
        outage.over()
    assert [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records] == [
        "The database is unavailable",
        "The database is back",
    ]


def test_the_limiter_says_an_unreachable_database_as_django_does(db, monkeypatch):
    """On PostgreSQL the limiter has a connection of its own: psycopg's errors come out as Django's, so that the
    webhook answers 503 and the queue retries rather than treating a restart as a defect."""
    if connection.vendor != "postgresql":
        pytest.skip("the limiter's own connection is PostgreSQL's")
    import psycopg

    from cio import ratelimit

    def refused(settings_dict):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(ratelimit, "_postgresql_side_connection", refused)
    with pytest.raises(OperationalError):
        ratelimit.SharedRateLimiter("outage-test", rate=10).acquire()


def test_configuration_versions_are_read_from_the_database_while_redis_is_away(db, settings, local_redis, caplog):
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "settings_app.shared_cache.FallbackRedisCache",
            "LOCATION": local_redis.url,
            "RETRY_SECONDS": 0,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    cache = caches["default"]
    row = WebhookSettings.load()
    assert WebhookSettings.cached().access_key == row.access_key
    local_redis.stop()
    with caplog.at_level(logging.WARNING):
        row.access_key = "r" * 43
        row.save()  # published to the database; the cache write falls back
        freshness.forget_all()
        assert WebhookSettings.cached().access_key == "r" * 43
        assert not cache.sharing
        local_redis.start()
        assert cache.sharing  # asked again: back
        generation = cache.generation
        freshness.forget_all()
        assert WebhookSettings.cached().access_key == "r" * 43
    assert generation == 1
    messages = [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records]
    assert messages == ["Redis is unavailable", "Redis is back"]


def test_the_pool_checks_every_idle_connection_once_it_finds_one_dead(db):
    """webhooks.outages.watch_pool wraps psycopg_pool's own check (an attribute of the pool's): a psycopg_pool that
    changed it would leave restarts costing a second per dead connection again, without a word — this says so."""
    pool = getattr(connection, "pool", None)
    if pool is None:
        pytest.skip("no connection pool (SQLite, or DATABASE_POOL off)")
    from psycopg_pool import ConnectionPool

    from webhooks import outages

    outages.watch_pool(connection)
    assert callable(pool._check) and pool._check is not ConnectionPool.check_connection
