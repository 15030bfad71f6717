"""Fuzz run of the webhook: thousands of generated requests against a running site, then a search for failures and
leaked secrets.

    .venv/bin/python bench/fuzz.py [--requests 5000] [--seed 11]      (after `make test` has created .venv)

Starts the Customer.io emulator (no rate limit) and the site (runserver, DEBUG off, production settings, its log in a
file) on a fresh SQLite database in a temporary folder (or on BENCH_DATABASE_URL, e.g. an empty PostgreSQL database),
with the refused-request throttle off (WEBHOOK_REFUSED_PER_MINUTE=0) so that generated requests reach the processing.
Sends the requests bench/fuzz_requests.py generates (every method, odd query strings, headers and bodies, the key
right, wrong or missing), then those bench/fuzz_reporting.py generates for the reporting webhook (signed right, with
another key, unsigned, too old, tampered; odd bodies). Then reports the answers by status, every 5xx, every traceback
in the site's log, any message event stored from a request that was not signed right (or its message content), and
any access key, signing key, admin password, Customer.io API key or sent password found in the database or the log.
Target: 0 5xx, 0 tracebacks, 0 events from refused requests, 0 secrets."""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fuzz_reporting
import requests
from fuzz_requests import SENT_PASSWORD, generate
from queued_site import stop_processes

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SENDERS = 4
ADMIN_PASSWORD = "fuzz-admin-Passw0rd-4e1b"
CIO_SECRETS = ("emulator-app-key", "emulator-track-key")
REPORTING_KEYS = ("fuzz-reporting-signing-key-1f3a", "fuzz-reporting-signing-key-old-9b2c")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fixture() -> dict:
    customers = [
        {
            "email": "ann@example.com",
            "id": "ann",
            "attributes": {"first_name": "Ann\u0000", "user_pass": SENT_PASSWORD},
        },
        {"email": "bob@example.com", "id": "bob", "attributes": {"first_name": "Bob", "last_name": "\ud83d\ude00"}},
    ] + [
        {"email": f"new{n}@example.com", "id": f"new{n}", "attributes": {"first_name": f"N{n}"}, "segments": [1]}
        for n in range(50)
    ]
    return {"segments": [{"id": 1, "name": "Fuzzers", "type": "manual"}], "customers": customers}


class Site:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.emulator_port = free_port()
        self.log_path = workdir / "site.log"
        database_url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'fuzz.sqlite3'}"
        emulator_url = f"http://127.0.0.1:{self.emulator_port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
            "ENV_FILE": os.devnull,
            "DEBUG": "0",
            "SECRET_KEY": "fuzz-only-secret-key",
            "ALLOWED_HOSTS": "127.0.0.1",
            # Plain HTTP on loopback: without this, DEBUG off redirects every request to HTTPS.
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": database_url,
            "CUSTOMERIO_APP_API_URL": emulator_url,
            "CUSTOMERIO_TRACK_API_URL": emulator_url,
            "CUSTOMERIO_APP_API_KEY": CIO_SECRETS[0],
            "CUSTOMERIO_SITE_ID": "emulator-site",
            "CUSTOMERIO_TRACK_API_KEY": CIO_SECRETS[1],
            "CUSTOMERIO_APP_API_RATE": "0",
            "WEBHOOK_REFUSED_PER_MINUTE": "0",
            "CUSTOMERIO_REPORTING_SIGNING_KEYS": ",".join(REPORTING_KEYS),
            "ENABLE_CIO_EMULATOR": "1",
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "LOG_LEVEL": "INFO",
        }
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []
        self.log = None

    def manage(self, *args) -> str:
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"manage.py {args[0]} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def start(self):
        fixture_path = self.workdir / "fixture.json"
        fixture_path.write_text(json.dumps(fixture()))
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.processes.append(
            subprocess.Popen(
                [PYTHON, "manage.py", "cio_emulator", "--port", str(self.emulator_port), "--rate-limit", "0"]
                + ["--fixture", str(fixture_path)],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.processes.append(
            subprocess.Popen(
                [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
                cwd=ROOT,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
        )
        self.processes.append(
            subprocess.Popen(
                [PYTHON, "manage.py", "webhook_worker"],
                cwd=ROOT,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=2)
                requests.get(f"http://127.0.0.1:{self.emulator_port}/_emulator/requests", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise SystemExit("the site or the emulator did not start")

    def stop(self):
        stop_processes(self.processes)
        if self.log:
            self.log.close()


def send(base: str, request: dict) -> tuple[int, str]:
    headers = request["headers"]
    if "sign" in request:  # a reporting webhook's: signed now, so that a long run stays inside its five minutes
        headers = fuzz_reporting.sign_at_send(request, REPORTING_KEYS[0], time.time())
    try:
        response = requests.request(
            request["method"], base + request["url"], headers=headers, data=request["body"], timeout=60
        )
        return response.status_code, response.text[:300]
    except (ValueError, UnicodeError) as error:  # e.g. a header value requests itself refuses to send
        return -1, f"not sent: {type(error).__name__}: {error}"[:200]
    except requests.RequestException as error:
        return 0, f"connection: {error}"[:300]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--reporting", type=int, default=2000, help="requests to the reporting webhook (default 2000)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fuzz-") as workdir:
        site = Site(Path(workdir))
        site.manage("migrate", "--noinput")
        site.manage("ensure_admin")
        urls = site.manage("webhook_urls", "--base-url", "http://127.0.0.1")
        key = urls.split("access_key=", 1)[1].split()[0]
        sends = generate(random.Random(options.seed), key, options.requests)
        reporting = fuzz_reporting.generate(random.Random(options.seed + 1), options.reporting)
        database = site.env["DATABASE_URL"].split(":")[0]
        print(
            f"Fuzz run: {len(sends)} generated requests and {len(reporting)} to the reporting webhook, seed "
            f"{options.seed}, {SENDERS} senders, database {database}"
        )
        try:
            site.start()
            started = time.monotonic()
            with ThreadPoolExecutor(SENDERS) as pool:
                answers = list(pool.map(lambda r: send(f"http://127.0.0.1:{site.port}", r), sends))
                elapsed = time.monotonic() - started
                reporting_answers = list(pool.map(lambda r: send(f"http://127.0.0.1:{site.port}", r), reporting))
            # The site writes a minute's tally of refused requests at its first refused request in a later minute.
            time.sleep(61 - time.time() % 60)
            requests.post(f"http://127.0.0.1:{site.port}/?wpf_action=test&access_key=wrong", timeout=30)
            time.sleep(3)  # let the worker finish what was queued
        finally:
            site.stop()
        failures = report_answers(sends, answers, elapsed)
        print("  the reporting webhook:")
        failures += report_answers(reporting, reporting_answers, None)
        # Every table but the settings row, which is where the key belongs.
        dump = site.manage("dumpdata", "--exclude", "settings_app.webhooksettings")
        log_text = site.log_path.read_text(errors="replace")
        report_rows(answers, dump)
        failures += report_message_events(reporting, reporting_answers, dump)
        report_logs_and_secrets(failures, key, dump, log_text)


def report_answers(sends, answers, elapsed):
    statuses = Counter(status for status, _ in answers)
    if elapsed is not None:
        print(f"  sent in {elapsed:.0f} s ({len(sends) / elapsed:.0f} requests/s)")
    print("  answers by status: " + ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items())))
    failures = [
        (request, status, text) for request, (status, text) in zip(sends, answers, strict=True) if status >= 500
    ]
    print(f"  5xx answers: {len(failures)}")
    for request, status, text in failures[:10]:
        print(f"    {status} {request['method']} {request['url'][:100]!r}: {text[:120]!r}")
    unsent = [text for status, text in answers if status <= 0]
    if unsent:
        print(f"  not sent or no answer: {len(unsent)}, e.g. {unsent[0]!r}")
    return len(failures)


def report_rows(answers, dump: str):
    """What the run left in the database: requests refused for their key must not have a row each."""
    rows = Counter(entry["model"] for entry in json.loads(dump))
    refused = sum(1 for status, text in answers if "invalid_access_key" in text or "too_many_refused" in text)
    print(
        f"  rows: {rows['webhooks.webhookdelivery']} deliveries, {rows['users.activitylog']} activity lines, "
        f"{rows['webhooks.refusedrequestwindow']} refused-request rows (for {refused} requests refused for their key)"
    )


def report_message_events(sends, answers, dump: str) -> int:
    """Events stored only from requests signed right and answered 200, and never their message content. Returns how
    many events break that."""
    accepted = set()
    for request, (status, _) in zip(sends, answers, strict=True):
        if fuzz_reporting.storable(request) and status == 200:
            accepted.add(fuzz_reporting.stored_event_id(request))
    stored = [entry["fields"] for entry in json.loads(dump) if entry["model"] == "webhooks.messageevent"]
    strays = [fields["event_id"] for fields in stored if fields["event_id"] not in accepted]
    content = sum(str(fields).count("secret ") for fields in stored)
    refused = sum(1 for status, _ in answers if status in (401, 429))
    print(
        f"  rows: {len(stored)} message events from {len(accepted)} event ids accepted ({refused} requests refused for "
        f"their signature); from requests not signed right: {len(strays)}; message content kept: {content}"
    )
    for stray in strays[:5]:
        print(f"    STORED WITHOUT A RIGHT SIGNATURE: event_id {stray!r}")
    return len(strays) + content


def report_logs_and_secrets(failures: int, key: str, dump: str, log_text: str):
    tracebacks = log_text.count("Traceback (most recent call last)")
    print(f"  tracebacks in the site's log: {tracebacks}")
    if tracebacks:
        where = log_text.index("Traceback (most recent call last)")
        print("    first: " + log_text[where : where + 600].replace("\n", "\n      "))
    secrets = {
        "access key": key,
        "admin password": ADMIN_PASSWORD,
        "sent password": SENT_PASSWORD,
        **{f"Customer.io key {name}": name for name in CIO_SECRETS},
        **{f"signing key {n}": signing_key for n, signing_key in enumerate(REPORTING_KEYS, start=1)},
    }
    found = 0
    for label, secret in secrets.items():
        for place, text in (("database", dump), ("log", log_text)):
            hits = text.count(secret)
            if hits:
                found += hits
                print(f"  SECRET FOUND: {label} x{hits} in the {place}")
    print(f"  secrets found in the database ({len(dump) // 1024} KB dumped) or the log: {found}")
    print(f"  result: {'target met' if not failures and not tracebacks and not found else 'TARGET MISSED'}")


if __name__ == "__main__":
    main()
