"""The webhook on the wire, under gunicorn as production runs it (and the development server where it differs):
chunked and multipart bodies, and keep-alive connections after a body the site did not read."""

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from settings_app.models import WebhookSettings
from webhooks.models import WebhookDelivery

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
NOBODY = json.dumps({"email": "nobody@example.com"}).encode()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_site(emulator_env, tmp_path):
    """gunicorn with gunicorn.conf.py on the test database: one process, a few threads."""
    port = free_port()
    env = {
        **emulator_env,
        "ALLOWED_HOSTS": "127.0.0.1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [GUNICORN, "wpfusion_site.wsgi"], cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def key(db):
    return WebhookSettings.load().access_key


def send(connection: http.client.HTTPConnection, path: str, body=b"", headers=None, chunked=False):
    connection.request(
        "POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})}, encode_chunked=chunked
    )
    response = connection.getresponse()
    return response, response.read()


def test_a_chunked_body_is_read(gunicorn_site, key, cio_emulator):
    connection = http.client.HTTPConnection("127.0.0.1", gunicorn_site, timeout=10)
    parts = iter([b'{"email": ', b'"nobody@example.com"', b"}"])
    response, body = send(connection, f"/?wpf_action=update_tags&access_key={key}", parts, chunked=True)
    assert response.status == 200, body
    assert json.loads(body)["status"] == "skipped"  # the body was read: "no matching user", not "no contact"
    delivery = WebhookDelivery.objects.get()
    assert delivery.body == {"email": "nobody@example.com"}


def test_a_chunked_body_over_the_limit_is_413_and_the_connection_closes(gunicorn_site, key):
    """The site reads a chunked body one byte past the limit: how much is left after that is unknown, so the
    answer says Connection: close, and the client's next request goes on a new connection."""
    connection = http.client.HTTPConnection("127.0.0.1", gunicorn_site, timeout=10)
    for size in (settings.WEBHOOK_MAX_BODY_BYTES + 10, 2 * settings.WEBHOOK_MAX_BODY_BYTES):
        pad = iter([b'{"email": "nobody@example.com", "pad": "', b"x" * size, b'"}'])
        response, body = send(connection, f"/?wpf_action=test&access_key={key}", pad, chunked=True)
        assert (response.status, json.loads(body)["error"]) == (413, "payload_too_large")
        assert response.getheader("Connection") == "close"
        response, body = send(connection, f"/?wpf_action=test&access_key={key}", b"{}")
        assert response.status == 200


def test_a_multipart_body_is_read_under_gunicorn(gunicorn_site, key, cio_emulator):
    response = requests.post(
        f"http://127.0.0.1:{gunicorn_site}/?wpf_action=update_tags&access_key={key}",
        files={"email": (None, "nobody@example.com")},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "skipped"


@pytest.mark.parametrize(
    ("label", "path", "size", "status"),
    [
        ("refused 200 KB body", "/?wpf_action=test&access_key=wrong-key", 200_000, 403),
        ("413, drained", "/?wpf_action=test&access_key={key}", 100_000, 413),
    ],
)
def test_the_connection_stays_usable_after_an_unread_body(gunicorn_site, key, label, path, size, status):
    connection = http.client.HTTPConnection("127.0.0.1", gunicorn_site, timeout=10)
    response, _ = send(connection, path.format(key=key), b"x" * size)
    assert response.status == status, label
    assert response.getheader("Connection") != "close"
    socket_before = connection.sock
    response, body = send(connection, f"/?wpf_action=test&access_key={key}", b"{}")
    assert (response.status, json.loads(body)) == (200, {"status": "ok", "action": "test"}), label
    assert connection.sock is socket_before  # the same connection answered


def test_a_body_too_large_to_drain_is_answered_with_connection_close(gunicorn_site, key):
    connection = http.client.HTTPConnection("127.0.0.1", gunicorn_site, timeout=10)
    response, body = send(connection, f"/?wpf_action=test&access_key={key}", b"x" * 400_000)
    assert (response.status, json.loads(body)["error"]) == (413, "payload_too_large")
    assert response.getheader("Connection") == "close"
    response, body = send(connection, f"/?wpf_action=test&access_key={key}", b"{}")
    assert response.status == 200


def test_the_development_server_keeps_the_connection_after_an_unread_body(live_server, key):
    host, port = live_server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    for path, size, status in (
        ("/?wpf_action=test&access_key=wrong", 200_000, 403),
        (f"/?access_key={key}", 100_000, 413),
    ):
        response, _ = send(connection, path, b"x" * size)
        assert response.status == status
        response, body = send(connection, f"/?wpf_action=test&access_key={key}", b"{}")
        assert response.status == 200, body


def test_refused_requests_stay_out_of_gunicorn_s_access_log(gunicorn_site, key, tmp_path, settings):
    """They are logged once per address per minute by the site; one access line each would let a flood fill the
    disk."""
    with requests.Session() as session:
        for _ in range(50):
            assert session.post(f"http://127.0.0.1:{gunicorn_site}/?wpf_action=test&access_key=wrong").status_code in (
                403,
                429,
            )
        assert session.post(f"http://127.0.0.1:{gunicorn_site}/?wpf_action=test&access_key={key}").status_code == 200
    time.sleep(0.5)  # gunicorn writes its access line after the answer
    lines = [line for line in (tmp_path / "access.log").read_text().splitlines() if "/healthz" not in line]
    assert len(lines) == 1 and '" 200 ' in lines[0]


def test_a_client_that_never_sends_its_declared_body_holds_a_thread_two_seconds_at_most(gunicorn_site, key):
    """Content-Length promised, no body sent: the refusal is answered with Connection: close once the drain gives
    up, not when the client feels like it."""
    import socket

    with socket.create_connection(("127.0.0.1", gunicorn_site), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /?wpf_action=test&access_key=wrong HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 403") and b"Connection: close" in answer
    assert waited < 5
