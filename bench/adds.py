"""Queued adds with Return Password, against the machine's hashing bound (`bench/burst.py --adds [N]`).

N (default 2,000) queued `add`s for people new to the site with Return Password on, 2 workers: the drain rate
beside the machine's hashing bound (cores / one production hash's time) and beside Customer.io's limit, with lost
deliveries, users and accepted password returns counted (one by one or in /api/v2/batch calls). Beside them, the CPU
the run's processes used (bench/cpu_use.py: hashing, web server, queue workers, database, this process with the
emulator), and the rate all of it allows on this machine's cores. Figures, not pass/fail; every loop is bounded.
"""

import os
import time
from collections import Counter

import cpu_use
from queued_site import emulated_site, fire, wait_for_drain

ADDS_DEFAULT = 2000
FIELD = "site_password"  # the Return Password field


def one_hash_seconds(runs: int = 9) -> float:
    """Wall time of one password hash with the site's production hasher: the fastest of a few, so that another
    process busy at that moment on a shared machine cannot make the bound look lower (and the ratio higher)."""
    from django.contrib.auth.hashers import make_password

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        make_password("correct horse battery staple")
        times.append(time.perf_counter() - started)
    return min(times)


def run_adds(count: int) -> None:
    """`count` queued `add`s for people new to the site, Return Password on, 2 workers: the drain rate beside the
    machine's hashing bound (cores / one hash's time) and beside Customer.io's (App API calls at 10/s)."""
    # BENCH_APP_API_RATE (default 10, Customer.io's; 0 = none) sets the App API limit, on the emulator and the site
    # alike: 0 shows the hashing side alone.
    app_rate = int(os.environ.get("BENCH_APP_API_RATE", "10"))
    with emulated_site("burst-adds-", app_rate) as (site, _emulator, control, access_key):
        site.env["CUSTOMERIO_APP_API_RATE"] = str(app_rate)
        from django.contrib.auth.hashers import get_hasher
        from django.db.models import Count

        from settings_app.models import WebhookSettings
        from users.models import User
        from users.services.password_hashing import usable_cores
        from webhooks.models import WebhookDelivery

        WebhookSettings.objects.update(return_password=True, return_password_field=FIELD)
        people = [
            {"email": f"new{n}@example.com", "id": f"n{n}", "attributes": {"first_name": f"New{n}"}, "segments": [1]}
            for n in range(count)
        ]
        control.reset({"segments": [{"id": 1, "name": "Segment 1", "type": "manual"}], "customers": people})
        hash_seconds = one_hash_seconds()
        cores = usable_cores()
        bound = cores / hash_seconds
        print(
            f"{count} queued adds for new people, Return Password on, 2 workers, App API limit {app_rate or 'none'}/s, "
            f"hasher {get_hasher('default').algorithm}, database {site.env['DATABASE_URL'].split(':')[0]}"
        )
        try:
            site.start(workers=2)
            sends = [("add", n) for n in range(count)]
            url = f"http://127.0.0.1:{site.port}"
            cpu_before = cpu_use.snapshot()
            started = time.monotonic()
            latencies, accepted = fire_adds(url, access_key, sends)
            drained = wait_for_drain()
            cpu, others = cpu_use.spent(cpu_before, cpu_use.snapshot())
        finally:
            site.stop()
        elapsed = drained - started
        statuses = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
        finished = sum(statuses.get(s, 0) for s in WebhookDelivery.FINISHED)
        log = control.requests()
        app_calls = sum(1 for entry in log if entry["path"].startswith("/v1/"))
        returned_to = accepted_returns(log)
        rate = accepted / elapsed if elapsed else 0.0
        print(f"  accepted                      {accepted}")
        print(f"  lost (accepted, unfinished)   {accepted - finished}")
        print(f"  failed                        {statuses.get('failed', 0)}")
        print(f"  users                         {User.objects.count()} (expected {count})")
        print(
            f"  accepted password returns     {sum(returned_to.values())} for {len(returned_to)} people "
            f"(expected {count} each once)"
        )
        print(f"  429s seen                     {sum(1 for entry in log if entry['status'] == 429)}")
        print(f"  one hash                      {hash_seconds * 1000:.0f} ms (fastest of 9), {cores} cores")
        print(f"  drain time                    {elapsed:.1f} s (first accept to empty queue)")
        print(f"  drain rate                    {rate:.1f} adds/s")
        print(f"  hashing bound                 {bound:.1f} adds/s  (ratio {rate / bound:.2f}, goal >= 0.8)")
        if cpu:
            hashing = cpu.pop("password hashing", 0.0)
            print(f"  CPU used, hashing             {hashing:.1f} s ({hashing / max(count, 1) * 1000:.0f} ms per add)")
            for kind, seconds in sorted(cpu.items()):
                print(f"  CPU used, {kind:<20}{seconds:.1f} s ({seconds / max(count, 1) * 1000:.0f} ms per add)")
            # What the drain could reach with every core busy all along: the hashes and everything else (the
            # accepts, the processing, the database, the emulator standing in for Customer.io) share the cores.
            per_add = (hashing + sum(cpu.values())) / max(count, 1)
            print(f"  CPU bound                     {cores / per_add:.1f} adds/s  (cores / all CPU used per add)")
            print(f"  CPU used by other processes   {others:.1f} s  (not this run's: near 0 on a quiet machine)")
        if app_rate:
            print(
                f"  Customer.io bound             {count / max(app_calls / app_rate, 1e-9):.1f} adds/s  "
                f"({app_calls} App API calls at {app_rate}/s: {app_calls / max(count, 1):.2f} per add)"
            )
        else:
            print(f"  App API calls                 {app_calls} ({app_calls / max(count, 1):.2f} per add; no limit)")


def accepted_returns(log: list[dict]) -> Counter:
    """How many accepted password returns each person got: one by one (a Track API identify answered 200) or in
    /api/v2/batch requests answered 200 (207, some refused, is counted apart as a failure)."""
    returned: Counter = Counter()
    for entry in log:
        if entry["status"] != 200:
            continue
        if entry["path"].startswith("/api/v1/customers/") and FIELD in (entry.get("body") or {}):
            returned[entry["path"].removeprefix("/api/v1/customers/")] += 1
        elif entry["path"] == "/api/v2/batch":
            for operation in (entry.get("body") or {}).get("batch", []):
                if FIELD in operation.get("attributes", {}):
                    identifiers = operation["identifiers"]
                    person = f"cio_{identifiers['cio_id']}" if "cio_id" in identifiers else identifiers["email"]
                    returned[person] += 1
    return returned


def fire_adds(site_url: str, access_key: str, sends) -> tuple[list[float], int]:
    return fire(site_url, access_key, sends, email=lambda n: f"new{n}@example.com")
