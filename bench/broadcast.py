"""`bench/burst.py --broadcast [--contacts N]`: a journey fired for everyone entering a big segment.

20,000 queued webhooks (N with --contacts) for as many distinct people, spread over 20 segments, sent as fast as the
site accepts them to 2 workers with the emulator's App API limit at 10 requests/s: once `update_tags`, once
`update`. Prints the App API calls (from the emulator's log), how long the queue took to empty after the last
accept, lost deliveries and duplicate tag events, beside what one call per contact would have cost (computed, not
run). Use BENCH_DATABASE_URL=postgres://... for PostgreSQL. Figures, not pass/fail; every loop is bounded.
"""

import math
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from queued_site import SENDERS, Site, emulated_site, percentile, wait_for_drain

SEGMENTS = 20
RATE = 10  # the emulator's App API limit, requests/s
GOALS = {"update_tags": 400, "update": 600}


def fixture(contacts: int) -> dict:
    segments = [{"id": n, "name": f"Broadcast {n}", "type": "manual"} for n in range(1, SEGMENTS + 1)]
    customers = [
        {
            "email": f"person{n}@example.com",
            "id": f"p{n}",
            "attributes": {"first_name": f"First{n}"},
            "segments": [1 + n % SEGMENTS],
        }
        for n in range(contacts)
    ]
    return {"segments": segments, "customers": customers}


def reset_database(contacts: int) -> None:
    from django.contrib.auth import get_user_model
    from django_tasks_db.models import DBTaskResult

    from users.models import ActivityLog, ContactLock, Role, UserTag
    from webhooks.models import WebhookDelivery

    User = get_user_model()
    for model in (WebhookDelivery, DBTaskResult, ActivityLog, UserTag, ContactLock):
        model.objects.all().delete()
    User.objects.all().delete()
    role = Role.get_default()
    User.objects.bulk_create(
        [
            User(
                username=f"person{n}@example.com",
                email=f"person{n}@example.com",
                email_normalized=f"person{n}@example.com",
                role=role,
            )
            for n in range(contacts)
        ],
        batch_size=2000,
    )


def fire(site_url: str, access_key: str, sends) -> tuple[list[float], int]:
    """Every webhook (async=true) from SENDERS threads: accept latencies (s) and how many were queued."""
    local = threading.local()

    def send(item):
        action, n = item
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        began = time.perf_counter()
        response = session.post(
            f"{site_url}/?wpf_action={action}&access_key={access_key}&async=true",
            json={"email": f"person{n}@example.com"},
            timeout=60,
        )
        return time.perf_counter() - began, response.status_code == 200 and response.json().get("status") == "queued"

    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        answers = list(pool.map(send, sends))
    return [latency for latency, _ in answers], sum(1 for _, ok in answers if ok)


def _kind(path: str) -> str:
    if path == "/v1/segments":
        return "segment list"
    if path.endswith("/customer_count"):
        return "sizes"
    if path.endswith("/membership"):
        return "membership pages"
    if path == "/v1/customers/attributes":
        return "attributes (100 a call)"
    return "one contact's segments" if path.endswith("/segments") else "other"


def per_contact_calls(action: str, contacts: int) -> int:
    """One segments call per contact, and for `update` the attributes 100 people a call."""
    return contacts + (math.ceil(contacts / 100) if action == "update" else 0)


def run(action: str, contacts: int, site: Site, control, access_key: str) -> None:
    from django.db.models import Count

    from users.models import ActivityLog, UserTag
    from webhooks.models import WebhookDelivery

    reset_database(contacts)
    control.reset(fixture(contacts))
    sends = [(action, n) for n in range(contacts)]
    random.Random(11).shuffle(sends)
    started = time.monotonic()
    latencies, accepted = fire(f"http://127.0.0.1:{site.port}", access_key, sends)
    last_accept = time.monotonic()
    drained = wait_for_drain()
    statuses = dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
    finished = sum(statuses.get(s, 0) for s in WebhookDelivery.FINISHED)
    kinds = Counter(_kind(entry["path"]) for entry in control.requests() if entry["path"].startswith("/v1/"))
    app_calls = sum(kinds.values())
    tag_lines = ActivityLog.objects.filter(message__startswith="Loaded tags").values("user_id").annotate(n=Count("pk"))
    duplicates = tag_lines.filter(n__gt=1).count()
    tagged = UserTag.objects.values("user_id").distinct().count()
    baseline = per_contact_calls(action, contacts)
    print(f"\n{action}: {contacts} queued webhooks, {contacts} contacts in {SEGMENTS} segments")
    print(f"  accepted                         {accepted} in {last_accept - started:.1f} s")
    print(f"  processed                        {statuses.get('succeeded', 0) + statuses.get('skipped', 0)}")
    print(f"  failed                           {statuses.get('failed', 0)}")
    print(f"  lost (accepted, unfinished)      {accepted - finished}")
    print(f"  users with their tag             {tagged} of {contacts}")
    print(f"  duplicate tag events             {duplicates}")
    print(
        f"  App API calls                    {app_calls}  (goal for 20,000: <= {GOALS[action]}; "
        f"one per contact: {baseline}, {baseline / RATE:.0f} s at {RATE}/s)"
    )
    print("  of which                          " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
    print(f"  queue empty after last accept    {max(0.0, drained - last_accept):.1f} s  (goal: <= 30 s)")
    print(
        f"  accept latency p50 / p99         {percentile(latencies, 0.5) * 1000:.0f} ms / "
        f"{percentile(latencies, 0.99) * 1000:.0f} ms"
    )


def main(contacts: int) -> None:
    with emulated_site("broadcast-", RATE) as (site, _emulator, control, access_key):
        print(
            f"Broadcast: {contacts} contacts, {SENDERS} senders, 2 workers, emulator App API limit {RATE}/s, "
            f"database {site.env['DATABASE_URL'].split(':')[0]}"
        )
        try:
            site.start(workers=2)
            run("update_tags", contacts, site, control, access_key)
            run("update", contacts, site, control, access_key)
        finally:
            site.stop()
