"""Production smoke test (CI runs it when PostgreSQL answers): the site as the docs' Production page runs it.

    .venv/bin/python scripts/smoke_production.py [postgres://postgres@127.0.0.1:5432/postgres]

On a fresh PostgreSQL database: `check --deploy`, migrate and collectstatic with the production settings, then
gunicorn (gunicorn.conf.py), one `webhook_worker` and the Customer.io emulator. Checks over HTTP, as the TLS proxy
in front would forward them: /healthz, the admin's login page and its stylesheet (served by whitenoise, cached for
long), a `test` webhook, an `async=true` webhook processed by the worker, no access key in the access log, and that
SIGTERM stops every process cleanly. Exits 1 naming every check that failed.
"""

import os
import re
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from production_site import (  # noqa: E402
    DEFAULT_POSTGRES,
    VIA_PROXY,
    Processes,
    access_key,
    fresh_database,
    manage,
    postgres_answers,
    production_env,
    start_emulator,
    start_gunicorn,
)

FIXTURE = {
    "segments": [{"id": 1, "name": "Customers", "type": "manual"}],
    "customers": [{"email": "ann@example.com", "id": "1001", "attributes": {"first_name": "Ann"}, "segments": [1]}],
}
ONE_YEAR = 365 * 24 * 3600


class Checks:
    def __init__(self):
        self.failed: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'}  {name}" + (f": {detail}" if detail and not ok else ""))
        if not ok:
            self.failed.append(name)
        return ok


def max_age(cache_control: str) -> int:
    found = re.search(r"max-age=(\d+)", cache_control or "")
    return int(found.group(1)) if found else 0


def wait_for_delivery(database_url: str, delivery_id: int, timeout: float = 60) -> str:
    """The delivery's status once the worker has finished it (or the last one seen)."""
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as connection:
            row = connection.execute("SELECT status FROM webhooks_webhookdelivery WHERE id = %s", [delivery_id])
            found = row.fetchone()
        status = found[0] if found else "missing"
        if status in ("succeeded", "skipped", "failed"):
            return status
        time.sleep(0.5)
    return status


def run(server_url: str) -> list[str]:
    check = Checks()
    with (
        tempfile.TemporaryDirectory(prefix="smoke-") as workdir,
        fresh_database(server_url, "wpfusion_smoke" + os.environ.get("TEST_DB_SUFFIX", "")) as database_url,
    ):
        workdir = Path(workdir)
        processes = Processes(workdir)
        try:
            emulator = start_emulator(processes)
            requests.post(f"{emulator}/_emulator/reset", json={"fixture": FIXTURE}, timeout=10).raise_for_status()
            env = production_env(workdir, database_url, emulator, GUNICORN_ACCESS_LOG=str(workdir / "access.log"))

            print("Set-up, as the docs' Production page does it")
            deploy_check = manage(env, "check", "--deploy", "--fail-level", "WARNING")
            check("check --deploy reports no issues", "no issues" in deploy_check, deploy_check)
            manage(env, "migrate", "--noinput")
            manage(env, "collectstatic", "--noinput")
            site = start_gunicorn(processes, env)
            processes.start("worker", [sys.executable, "manage.py", "webhook_worker", "--worker-id", "smoke-1"], env)
            key = access_key(env)

            print(f"Checks against gunicorn at {site}")
            health = requests.get(f"{site}/healthz", timeout=10)
            check(
                "/healthz 200 with the database ok",
                health.status_code == 200 and health.json()["database"] == "ok",
                health.text,
            )
            plain = requests.get(f"{site}/admin/login/", timeout=10, allow_redirects=False)
            check(
                "plain HTTP is redirected to HTTPS",
                plain.status_code == 301 and plain.headers.get("Location", "").startswith("https://"),
                str(plain.status_code),
            )
            login = requests.get(f"{site}/admin/login/", headers=VIA_PROXY, timeout=10)
            check("/admin/login/ 200", login.status_code == 200, str(login.status_code))
            check("HSTS on HTTPS answers", "max-age=" in login.headers.get("Strict-Transport-Security", ""))
            stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
            if check("the login page links a hashed stylesheet", bool(stylesheet), login.text[:300]):
                css = requests.get(f"{site}{stylesheet.group(1)}", headers=VIA_PROXY, timeout=10)
                check(
                    "the stylesheet is served (200)",
                    css.status_code == 200 and "body" in css.text,
                    str(css.status_code),
                )
                check(
                    "the stylesheet is cached for a year or more",
                    max_age(css.headers.get("Cache-Control")) >= ONE_YEAR,
                    css.headers.get("Cache-Control", ""),
                )

            test = requests.post(f"{site}/?wpf_action=test&access_key={key}", json={}, headers=VIA_PROXY, timeout=10)
            check("test webhook 200", test.status_code == 200 and test.json().get("status") == "ok", test.text)
            queued = requests.post(
                f"{site}/?wpf_action=add&access_key={key}&async=true",
                json={"email": "ann@example.com"},
                headers=VIA_PROXY,
                timeout=10,
            )
            if check(
                "async=true webhook queued",
                queued.status_code == 200 and queued.json().get("status") == "queued",
                queued.text,
            ):
                status = wait_for_delivery(database_url, queued.json()["delivery_id"])
                check("the worker processed it", status == "succeeded", f"status {status}")
            after = requests.get(f"{site}/healthz", timeout=10).json()
            check("/healthz sees the worker's heartbeat", after["worker_heartbeat_seconds"] is not None, str(after))
            check("/healthz: nothing left waiting", after["deliveries_waiting"] == 0, str(after))
        finally:
            codes = processes.stop_all()
        print("Shutdown")
        for name, code in codes.items():
            check(f"SIGTERM stops the {name} cleanly", code == 0, f"exit code {code}")
        for name in ("gunicorn", "worker"):
            output = processes.output(name) if (workdir / f"{name}.out").exists() else ""
            check(f"no traceback from the {name}", "Traceback" not in output, output[-2000:])
        access_log = (workdir / "access.log").read_text() if (workdir / "access.log").exists() else ""
        check("the access log has lines", "/healthz" in access_log and '"POST / ' in access_log, access_log[:500])
        check("the access log holds no access key", "access_key" not in access_log, access_log[:500])
    return check.failed


def main():
    server_url = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_POSTGRES
    if not postgres_answers(server_url):
        raise SystemExit(f"no PostgreSQL at {server_url}")
    failed = run(server_url)
    if failed:
        print(f"\nProduction smoke test FAILED: {', '.join(failed)}")
        raise SystemExit(1)
    print("\nProduction smoke test passed.")


if __name__ == "__main__":
    main()
