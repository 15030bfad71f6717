"""Burst benchmark for queued mode: 1,000 webhooks as fast as they can be sent, drained within Customer.io's limits.

    .venv/bin/python bench/burst.py            (after `make test` has created .venv; or `make bench-burst`)

Starts the Customer.io emulator (App API limit 10 requests/s), the site (gunicorn with gunicorn.conf.py, DEBUG off)
and two `webhook_worker` processes on a fresh SQLite database in a temporary folder (or on BENCH_DATABASE_URL, e.g.
an empty PostgreSQL database), fires 1,000 queued webhooks — mixed actions over 700 distinct contacts, 300 repeats —
waits for the queue to drain and prints figures. A second run does the same with 30 % of Customer.io requests
failing (500s, 429s and timeouts mixed). Figures, not pass/fail; every loop is bounded. `--postgres`: on a fresh
PostgreSQL database (`make bench-burst` runs both), so the accept latency is printed for PostgreSQL too.

`--broadcast [--contacts N]`: 20,000 webhooks for 20,000 people in 20 segments instead (see bench/broadcast.py).

    .venv/bin/python bench/burst.py --adds [N]

N (default 2,000) queued `add`s for people new to the site with Return Password on, against the machine's hashing
bound (see bench/adds.py).
"""

import os
import random
import statistics
import sys
import threading
import time

from queued_site import ROOT, SENDERS, Site, emulated_site, fire, percentile, wait_for_drain

CONTACTS = 700
DELIVERIES = 1000
EXISTING_USERS = 400  # contacts 0..399 have accounts (update / update_tags); the rest are created by add


def fixture():
    segments = [{"id": n, "name": f"Segment {n}", "type": "manual" if n % 2 else "dynamic"} for n in range(1, 11)]
    customers = [
        {
            "email": f"contact{n}@example.com",
            "id": f"c{n}",
            "attributes": {"first_name": f"First{n}", "last_name": f"Last{n}"},
            "segments": [1 + n % 10, 1 + (n * 7) % 10],
        }
        for n in range(CONTACTS)
    ]
    return {"segments": segments, "customers": customers}


def deliveries_to_send(rng: random.Random) -> list[tuple[str, int]]:
    """(action, contact number) for every webhook: each contact once, then 300 repeats, shuffled."""

    def action_for(n):
        if n >= EXISTING_USERS:
            return "add"
        return "update" if n % 2 else "update_tags"

    first = [(action_for(n), n) for n in range(CONTACTS)]
    repeats = [(action_for(n), n) for n in (rng.randrange(CONTACTS) for _ in range(DELIVERIES - CONTACTS))]
    sends = first + repeats
    rng.shuffle(sends)
    return sends


def reset_database():
    from django.contrib.auth import get_user_model
    from django_tasks_db.models import DBTaskResult

    from users.models import ActivityLog, ContactLock, Role, UserTag
    from webhooks.models import WebhookDelivery

    User = get_user_model()
    WebhookDelivery.objects.all().delete()
    DBTaskResult.objects.all().delete()
    ActivityLog.objects.all().delete()
    UserTag.objects.all().delete()
    ContactLock.objects.all().delete()
    User.objects.all().delete()
    role = Role.get_default()
    User.objects.bulk_create(
        [
            User(
                username=f"contact{n}@example.com",
                email=f"contact{n}@example.com",
                email_normalized=f"contact{n}@example.com",
                role=role,
            )
            for n in range(EXISTING_USERS)
        ]
    )


def run(label: str, site: Site, emulator, control, access_key: str, faults: bool) -> None:
    from django.db.models import Count

    from users.models import User
    from webhooks.models import WebhookDelivery

    reset_database()
    control.reset(fixture())
    stop_faults = threading.Event()
    if faults:
        # 20 % errors (the status rotating between 500, 429 and 503 every half second) + 10 % timeouts.
        def rotate():
            statuses = [500, 429, 503]
            turn = 0
            while not stop_faults.is_set():
                control.set_faults(fail_rate=0.2, fail_status=statuses[turn % 3], timeout_rate=0.1, timeout_seconds=3)
                turn += 1
                stop_faults.wait(0.5)
            control.set_faults()

        threading.Thread(target=rotate, daemon=True).start()
    sends = deliveries_to_send(random.Random(7))
    started = time.monotonic()
    latencies, accepted = fire(f"http://127.0.0.1:{site.port}", access_key, sends)
    drained = wait_for_drain()
    stop_faults.set()
    time.sleep(0.6)

    statuses = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
    finished = sum(statuses.get(s, 0) for s in WebhookDelivery.FINISHED)
    log = control.requests()
    calls = len(log)
    duplicates = User.objects.values("email_normalized").annotate(n=Count("pk")).filter(n__gt=1).count()
    print(f"\n{label}")
    print(f"  accepted                      {accepted}")
    print(f"  processed                     {statuses.get('succeeded', 0) + statuses.get('skipped', 0)}")
    print(f"  failed                        {statuses.get('failed', 0)}")
    print(f"  lost (accepted, unfinished)   {accepted - finished}")
    print(f"  duplicate users               {duplicates}")
    print(f"  users                         {User.objects.count()} (expected {CONTACTS})")
    print(f"  Customer.io calls             {calls} ({calls / max(accepted, 1):.2f} per delivery)")
    print(
        f"  429s seen                     {sum(1 for entry in log if entry['status'] == 429)}"
        + ("  (injected faults included)" if faults else "")
    )
    print(f"  drain time                    {drained - started:.1f} s")
    print(
        f"  accept latency p50 / p99      {statistics.median(latencies) * 1000:.0f} ms / "
        f"{percentile(latencies, 0.99) * 1000:.0f} ms"
    )


def main():
    if "--adds" in sys.argv:  # bench/adds.py: queued adds with Return Password, against the hashing bound
        from adds import ADDS_DEFAULT, run_adds

        position = sys.argv.index("--adds")
        following = sys.argv[position + 1] if len(sys.argv) > position + 1 else ""
        run_adds(int(following) if following.isdigit() else ADDS_DEFAULT)
        return
    if "--postgres" in sys.argv:  # the same runs on a fresh PostgreSQL database (the server on 127.0.0.1:5432)
        sys.path.insert(0, str(ROOT / "scripts"))
        from production_site import DEFAULT_POSTGRES, fresh_database

        name = "wpfusion_bench_burst" + os.environ.get("TEST_DB_SUFFIX", "")
        with fresh_database(DEFAULT_POSTGRES, name) as database_url:
            os.environ["BENCH_DATABASE_URL"] = database_url
            return runs()
    return runs()


def runs():
    with emulated_site("burst-", 10) as (site, emulator, control, access_key):
        print(
            f"{DELIVERIES} queued webhooks, {CONTACTS} contacts, {SENDERS} senders, 2 workers, "
            f"emulator App API limit 10/s, database {site.env['DATABASE_URL'].split(':')[0]}"
        )
        try:
            site.start(workers=2)
            run("Run 1: no faults", site, emulator, control, access_key, faults=False)
            run(
                "Run 2: 30 % of Customer.io requests failing (500 / 429 / 503, timeouts)",
                site,
                emulator,
                control,
                access_key,
                faults=True,
            )
        finally:
            site.stop()


if __name__ == "__main__":
    if "--broadcast" in sys.argv:  # bench/broadcast.py: one webhook per person of a big segment
        import argparse

        from broadcast import main as broadcast

        parser = argparse.ArgumentParser()
        parser.add_argument("--broadcast", action="store_true")
        parser.add_argument("--contacts", type=int, default=20_000)
        broadcast(parser.parse_args().contacts)
    else:
        main()
