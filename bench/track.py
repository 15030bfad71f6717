"""Profile changes made on the site, on their way to Customer.io: the outbox's batches next to one call per change.

    .venv/bin/python bench/track.py          (BENCH_DATABASE_URL=postgres://... for PostgreSQL)

On a fresh database beside the Customer.io emulator, 10,000 users each change a field mapped to push, one save each
(as 10,000 requests of the site would), with the database queries of each save counted. Then the background worker's
sending (users.services.outbox_sender) drains the outbox, and the Track API requests it made are counted from the
emulator's log, beside the bound ⌈bytes sent ÷ 500 KB⌉ + 1. Last, the same 10,000 changes sent the one-call-per-
change way (a PUT /api/v1/customers/{id} each, as WP Fusion does). Figures, not pass/fail; every loop is bounded.
"""

import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from queued_site import Site

PEOPLE = 10_000
BATCH_LIMIT = 500 * 1024
# Customer.io's Track API allows 1,000 requests a second (its API description, "Rate Limits").
TRACK_RATE = 1000


def main():
    from cio_emulator import EmulatorControl, EmulatorServer

    with tempfile.TemporaryDirectory(prefix="track-") as workdir, EmulatorServer(port=0, rate_limit=10) as emulator:
        site = Site(Path(workdir), emulator.url)
        site.manage("migrate", "--noinput")
        os.environ.update(site.env)  # this process is the site too: its credentials, its database
        import django

        django.setup()
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from cio import get_client
        from settings_app.models import FieldMapping, WebhookSettings
        from users.models import OutboxEntry, Role, User
        from users.services import outbox_sender

        control = EmulatorControl(emulator.url)
        control.reset({"customers": [{"email": f"p{n}@example.com", "cio_id": f"c{n}"} for n in range(PEOPLE)]})
        FieldMapping.objects.filter(user_field__in=["first_name", "last_name"]).update(direction="both")
        WebhookSettings.cached()
        role = Role.get_default()
        User.objects.bulk_create(  # bulk: nothing queued for them
            [
                User(username=f"p{n}", email=f"p{n}@example.com", email_normalized=f"p{n}@example.com", role=role)
                for n in range(PEOPLE)
            ],
            batch_size=1000,
        )
        users = list(User.objects.order_by("pk"))
        for n, user in enumerate(users):
            user.cio_id = f"c{n}"
        User.objects.bulk_update(users, ["cio_id"], batch_size=1000)
        database = site.env["DATABASE_URL"].split(":")[0]
        print(f"{PEOPLE:,} profile changes made on the site, database {database}")

        started = time.perf_counter()
        inserts_per_change, outbox_inserts = Counter(), Counter()
        for n, user in enumerate(users):
            user.first_name = f"Changed {n}"
            connection.queries_log.clear()  # a fresh log for each save (it holds 9,000 queries at most)
            with CaptureQueriesContext(connection) as queries:
                user.save(update_fields=["first_name"])
            statements = [query["sql"] for query in queries.captured_queries]
            inserts_per_change[sum(1 for sql in statements if sql.startswith("INSERT"))] += 1
            outbox_inserts[sum(1 for sql in statements if sql.startswith('INSERT INTO "users_outboxentry"'))] += 1
        saving = time.perf_counter() - started
        print(
            f"  the changes                 {saving:6.1f} s; outbox INSERTs per change {dict(outbox_inserts)} "
            f"(goal: one at most); all INSERTs per change {dict(inserts_per_change)} (the first change also "
            f"enqueues the worker's task, once for the burst); {OutboxEntry.objects.count():,} rows waiting"
        )

        control.clear_requests()
        started = time.perf_counter()
        summary = outbox_sender.send_due()
        drained = time.perf_counter() - started
        log = control.requests("/api/v2/batch")
        sent_bytes = sum(len(json.dumps(entry["body"], separators=(",", ":")).encode()) for entry in log)
        bound = math.ceil(sent_bytes / BATCH_LIMIT) + 1
        print(
            f"  outbox, /api/v2/batch       {drained:6.1f} s; {len(log)} requests for {sent_bytes / 1024:,.0f} KB "
            f"(bound {bound}); {summary.sent:,} sent, {summary.failed} to retry; "
            f"{len(log) / max(drained, 0.001):.1f} requests/s (Track API limit {TRACK_RATE:,}/s)"
        )

        control.clear_requests()
        client = get_client()
        started = time.perf_counter()
        for user in users:
            client.identify(f"cio_{user.cio_id}", {"first_name": user.first_name, "email": user.email})
        one_by_one = time.perf_counter() - started
        calls = len(control.requests("/api/v1/customers/"))
        print(
            f"  one call per change         {one_by_one:6.1f} s; {calls:,} requests; "
            f"{calls / max(one_by_one, 0.001):.0f} requests/s — {calls / max(len(log), 1):,.0f} × the outbox's "
            f"requests, {one_by_one / max(drained, 0.001):.1f} × its time (at the Track API's limit it would take "
            f"at least {calls / TRACK_RATE:.0f} s)"
        )


if __name__ == "__main__":
    sys.exit(main())
