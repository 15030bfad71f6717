"""Configuration changes reach every process within a second, and the hot path reads none in the steady state."""

import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings

from settings_app import freshness
from settings_app.models import FieldMapping, WebhookSettings, cached_field_mappings

WATCHER = """
import sys, time
import django
django.setup()
from settings_app.models import WebhookSettings
target = sys.argv[1]
stop = time.time() + 30
while time.time() < stop:
    key = WebhookSettings.cached().access_key
    print(f"{time.time():.3f} {key}", flush=True)
    if key == target:
        break
    time.sleep(0.02)
"""


def redis_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["database", "redis"])
def version_store(request, settings, subprocess_env):
    """Where versions are read from: the database (no REDIS_URL) or the shared Redis cache."""
    env = {**subprocess_env}
    env.pop("REDIS_URL", None)
    if request.param == "redis":
        if not redis_answers():
            pytest.skip("no Redis on 127.0.0.1:6379")
        env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": env["REDIS_URL"],
                "KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
            }
        }
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return request.param, env


def test_a_new_access_key_reaches_another_process_within_a_second(version_store):
    store, env = version_store
    row = WebhookSettings.load()
    new_key = "n" * 43
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, new_key],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = watcher.stdout.readline().split()
        assert first[1] == row.access_key  # the other process holds the old key
        watcher.stdout.readline()  # and has answered from its copy since
        row.access_key = new_key
        row.save()  # what the admin's Save does
        changed_at = time.time()
        seen_at = None
        for line in watcher.stdout:
            stamp, key = line.split()
            if key == new_key:
                seen_at = float(stamp)
                break
        assert seen_at is not None, f"the other process never saw the new key ({store})"
        assert seen_at - changed_at < freshness.REVALIDATE_SECONDS + 0.5, f"seen after {seen_at - changed_at:.2f} s"
    finally:
        watcher.kill()
        watcher.wait()


def test_a_mapping_changed_in_the_orm_is_used_at_once_in_this_process(db):
    assert [m.cio_attribute for m in cached_field_mappings() if m.user_field == "meta.plan"] == []
    FieldMapping.objects.create(cio_attribute="plan", user_field="meta.plan")
    assert [m.cio_attribute for m in cached_field_mappings() if m.user_field == "meta.plan"] == ["plan"]
    FieldMapping.objects.filter(user_field="meta.plan").delete()  # a queryset delete still sends post_delete
    assert [m.cio_attribute for m in cached_field_mappings() if m.user_field == "meta.plan"] == []


def test_versions_are_rechecked_once_a_second_and_nothing_is_reloaded_unchanged(db, django_assert_num_queries):
    WebhookSettings.load()  # the row exists (its creation is a change too)
    WebhookSettings.cached()
    cached_field_mappings()
    with django_assert_num_queries(0):
        for _ in range(100):
            WebhookSettings.cached()
            cached_field_mappings()
    freshness._forget_versions()  # as if a second had passed
    with django_assert_num_queries(1) as captured:  # one version check for every kind, no reload
        WebhookSettings.cached()
        cached_field_mappings()
    assert "settings_app_configversion" in captured.captured_queries[0]["sql"]
