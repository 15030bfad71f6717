"""A rule edited in the admin reaches a running server (another process) within a second."""

import socket
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from settings_app import freshness
from users.models import AccessRule, Tag

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def running_server(subprocess_env):
    port = free_port()
    env = {**subprocess_env, "ALLOWED_HOSTS": "127.0.0.1"}
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        stop = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/healthz", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > stop or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def seconds_until(url: str, wanted_status: int, since: float, limit: float = 10.0) -> float:
    """Seconds from `since` until a request sent then got `wanted_status`. Measured to when the request was sent, so
    that the answer's own latency on a busy machine is not counted as staleness."""
    while True:
        sent = time.monotonic()
        status = requests.get(url, allow_redirects=False, timeout=5).status_code
        if status == wanted_status:
            return sent - since
        assert time.monotonic() - since < limit, f"still {status} after {limit} s"
        time.sleep(0.02)


def test_a_rule_edited_in_the_admin_reaches_a_running_server_within_a_second(running_server, admin_client):
    vip = Tag.objects.create(segment_id=101, name="VIP", kind=Tag.Kind.MANUAL)
    assert requests.get(running_server + "/", timeout=5).status_code == 200  # the server holds "no rules"
    form = {"path": "/", "enabled": "on", "tags_any": [vip.pk], "staff_pass": "on", "message": "VIPs only."}

    response = admin_client.post(reverse("admin:users_accessrule_add"), form)
    assert response.status_code == 302
    locked_after = seconds_until(running_server + "/", 302, since=time.monotonic())

    rule = AccessRule.objects.get()
    form.pop("enabled")  # unticked
    response = admin_client.post(reverse("admin:users_accessrule_change", args=[rule.pk]), form)
    assert response.status_code == 302
    open_after = seconds_until(running_server + "/", 200, since=time.monotonic())

    for seconds in (locked_after, open_after):
        assert seconds < freshness.REVALIDATE_SECONDS + 0.5, f"seen after {seconds:.2f} s"
