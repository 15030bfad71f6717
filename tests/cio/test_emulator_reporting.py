"""The emulator's reporting webhooks: POST /_emulator/reporting_webhooks has it sign a message event about a person it
knows as Customer.io does (X-CIO-Signature over `v0:<X-CIO-Timestamp>:<body>`) and post it to a URL — here a bare
HTTP server that records what arrives."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cio_emulator import EmulatorControl

KEY = "emulator-test-signing-key"


class Receiver(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append({"headers": dict(self.headers), "body": body})
        answer = json.dumps({"status": "ok", "n": len(self.server.received)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def control(emulator):
    return EmulatorControl(emulator.url)


def url(site) -> str:
    return f"http://127.0.0.1:{site.server_address[1]}/webhooks/customerio/reporting/"


def signed_by(request, key=KEY) -> bool:
    timestamp = request["headers"]["X-CIO-Timestamp"]
    expected = hmac.new(key.encode(), b"v0:" + timestamp.encode() + b":" + request["body"], hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), request["headers"]["X-CIO-Signature"])


def test_a_signed_event_about_a_known_person(control, site):
    sent = control.send_reporting_webhook(url(site), "bob@example.com", "clicked", KEY, link="https://example.com/x")
    (request,) = site.received
    assert signed_by(request)
    assert abs(int(request["headers"]["X-CIO-Timestamp"]) - time.time()) < 5
    event = json.loads(request["body"])
    assert event == sent["event"]
    assert (event["object_type"], event["metric"], event["event_id"]) == ("email", "clicked", sent["event_id"])
    assert event["data"]["identifiers"]["email"] == "bob@example.com"
    assert event["data"]["identifiers"]["id"] == "b2"
    assert event["data"]["href"] == "https://example.com/x"
    assert sent["answers"] == [{"status": 200, "body": {"status": "ok", "n": 1}}]


def test_bad_signature_old_timestamp_and_repeat(control, site):
    control.send_reporting_webhook(url(site), "bob@example.com", "sent", KEY, bad_signature=True)
    control.send_reporting_webhook(url(site), "bob@example.com", "sent", KEY, old_timestamp=True)
    repeated = control.send_reporting_webhook(url(site), "b2", "opened", KEY, repeat=3, event_id="evt-1")
    bad, old, *again = site.received
    assert not signed_by(bad)
    assert signed_by(old)
    assert time.time() - int(old["headers"]["X-CIO-Timestamp"]) >= 590
    assert len(again) == 3
    assert {(request["body"], request["headers"]["X-CIO-Signature"]) for request in again} == {
        (again[0]["body"], again[0]["headers"]["X-CIO-Signature"])
    }
    assert repeated["event_id"] == "evt-1"


def test_unknown_people_and_bad_requests(emulator, site, http):
    base = {"url": url(site), "metric": "sent", "signing_key": KEY}
    cases = [
        ({**base, "person": "nobody@example.com"}, 404),
        ({**base, "person": "bob@example.com", "url": "ftp://x"}, 400),
        ({**base, "person": "bob@example.com", "signing_key": ""}, 400),
        ({**base, "person": "bob@example.com", "repeat": 0}, 400),
        ({**base, "person": "bob@example.com", "metric": ""}, 400),
    ]
    for body, status in cases:
        assert http.post(f"{emulator.url}/_emulator/reporting_webhooks", json=body, timeout=5).status_code == status
    assert site.received == []
