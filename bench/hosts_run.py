"""bench/hosts.py's run: the broadcast sent, the faults at their times, the wait until everything is done, the
figures. The site's processes and servers are started by bench/hosts.py; Django is set up on the site's database."""

import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from hosts_traffic import Traffic, by_status, max_in_any_window

RATE = 10  # Customer.io's App API limit, requests/s
QUEUED_SENDERS, SYNC_SENDERS = 16, 8
RUN_BUDGET = 1500  # seconds: no delivery is retried, nothing waited for, past it
# When each fault comes, in seconds after the first webhook was sent.
KILL_AT, REDIS_STOP_AT, REDIS_DOWN_FOR, POSTGRES_RESTART_AT = 20, 40, 15, 75
# Answers to requests sent from the restart's start until this long after the database was back count as "during".
AFTER_RESTART = 5.0
CUSTOMERIO_WAITS = 4.0
WAITING = ("received", "queued", "retrying", "processing")


def queue_state() -> dict | None:
    """Deliveries by status, or None while the database does not answer (it is restarting)."""
    from django.db import DatabaseError, connection
    from django.db.models import Count

    from webhooks.models import WebhookDelivery

    try:
        return dict(WebhookDelivery.objects.values_list("status").annotate(n=Count("pk")).order_by())
    except DatabaseError:
        connection.close()
        return None


def holder_of_a_batch(worker_ids: dict[str, str]) -> tuple[str, int] | None:
    """(the host of a worker processing a claimed batch now, how many deliveries it holds), or None. A worker's task
    is its claim's seed delivery; the batch shares the seed's lease (claimed together, renewed together)."""
    from django.db import DatabaseError, connection
    from django_tasks import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from webhooks.models import WebhookDelivery

    try:
        for task in DBTaskResult.objects.filter(status=TaskResultStatus.RUNNING).order_by("started_at"):
            if not task.worker_ids or task.worker_ids[-1] not in worker_ids:
                continue
            seed = WebhookDelivery.objects.filter(pk=task.args_kwargs["args"][0], status="processing").first()
            if seed is None or seed.lease_expires_at is None:
                continue  # still letting the burst settle: holds nothing yet
            held = WebhookDelivery.objects.filter(status="processing", lease_expires_at=seed.lease_expires_at)
            return worker_ids[task.worker_ids[-1]], held.count()
    except DatabaseError:
        connection.close()
    return None


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def run(processes, postgres, redis, control, web_urls, worker_ids, access_key, queued, sync, killed) -> None:
    traffic = Traffic(web_urls, access_key, deadline=time.monotonic() + RUN_BUDGET)
    queued_people, sync_people = list(range(queued)), list(range(queued, queued + sync))
    random.Random(7).shuffle(queued_people)
    began, start = time.time(), time.monotonic()
    senders = [
        traffic.send_all("queued", queued_people, QUEUED_SENDERS),
        traffic.send_all("sync", sync_people, SYNC_SENDERS),
    ]
    traffic.probe_health()
    faults = []

    sleep_until(start + KILL_AT)
    deadline, holder = time.monotonic() + 60, None
    while holder is None and time.monotonic() < deadline:
        holder = holder_of_a_batch(worker_ids)
        time.sleep(0.2) if holder is None else None
    name, held = holder or ("worker2", 0)
    processes.running[name].kill()  # SIGKILL: no chance to release anything
    killed.append(name)
    faults.append(f"t={time.time() - began:5.1f}  SIGKILL {name} (a worker host) holding a claimed batch of {held}")

    sleep_until(start + REDIS_STOP_AT)
    stopped_at = time.time()
    redis.stop()
    time.sleep(REDIS_DOWN_FOR)
    redis.start()  # nothing saved: it starts empty
    redis_back = time.time()
    faults.append(f"t={stopped_at - began:5.1f}  Redis stopped; started again, empty, at t={redis_back - began:.1f}")

    sleep_until(start + POSTGRES_RESTART_AT)
    restart_began = time.time()
    postgres.restart()
    restart_ended = time.time()
    took = restart_ended - restart_began
    faults.append(f"t={restart_began - began:5.1f}  pg_ctl restart -m fast: the database was back {took:.1f} s later")
    faults_ended = max(restart_ended, redis_back)

    done_at = None
    while time.monotonic() < traffic.deadline:
        state = queue_state()
        senders_done = not any(sender.is_alive() for sender in senders)
        if state is not None and senders_done and not any(state.get(status) for status in WAITING):
            done_at = time.time()
            break
        time.sleep(0.5)
    traffic.stopped.set()
    time.sleep(1)

    print("\nFaults (seconds after the first webhook was sent):")
    for line in faults:
        print(f"  {line}")
    exactly_once(traffic, control, queued, sync)
    during_restart(traffic, began, restart_began, restart_ended)
    app_api(control, began)
    drain(control, began, faults_ended, done_at)
    health(traffic, restart_began, restart_ended, len(web_urls))


def exactly_once(traffic: Traffic, control, queued: int, sync: int) -> None:
    from django.db.models import Count

    from users.models import ActivityLog, UserTag
    from webhooks.models import WebhookDelivery

    print("\nEvery delivery answered 200, processed exactly once:")
    for kind, total in (("queued", queued), ("sync", sync)):
        label = "queued (async=true)" if kind == "queued" else "synchronous"
        answered = len(traffic.answered_200[kind])
        others = sum(1 for a in traffic.answers if a.kind == kind and a.status != 200)
        print(
            f"  {label:30} answered 200: {answered} of {total} (given up: {len(traffic.given_up[kind])}; "
            f"{others} other answers before a 200, each retried)"
        )
    state = queue_state() or {}
    print(f"  {'deliveries in the database':30} " + ", ".join(f"{n} {status}" for status, n in sorted(state.items())))
    per_person = Counter(WebhookDelivery.objects.values("contact").annotate(n=Count("pk")).values_list("n", flat=True))
    print(
        f"  {'deliveries per person':30} " + ", ".join(f"{n} people: {rows}" for rows, n in sorted(per_person.items()))
    )
    lines = Counter(
        ActivityLog.objects.filter(message__startswith="Loaded tags")
        .values("user_id")
        .annotate(n=Count("pk"))
        .values_list("n", flat=True)
    )
    never = queued + sync - sum(lines.values())
    print(
        f"  {'tags loaded (activity lines)':30} once: {lines.get(1, 0)} people, more than once: "
        f"{sum(n for times, n in lines.items() if times > 1)}, never: {never}"
    )
    print(f"  {'people with their tag':30} {UserTag.objects.values('user_id').distinct().count()}")
    reads = Counter(
        match.group(1)
        for entry in control.requests("/v1/customers/")
        if (match := re.match(r"^/v1/customers/person(\d+)(?:%40|@)example\.com/segments$", entry["path"]))
    )
    sync_reads = Counter(times for person, times in reads.items() if int(person) >= queued)
    queued_reads = Counter(times for person, times in reads.items() if int(person) < queued)
    print(
        f"  {'emulator: one person read':30} synchronous: {dict(sorted(sync_reads.items()))} (times read: people); "
        f"queued: {dict(sorted(queued_reads.items())) or 'none'} (the rest by membership scans)"
    )


def during_restart(traffic: Traffic, run_began: float, began: float, ended: float) -> None:
    # Every webhook being answered at some moment of the restart (or of the seconds after it): those sent then, and
    # those already under way when it began.
    webhooks = [
        a for a in traffic.between(0, ended + AFTER_RESTART, kinds=("queued", "sync")) if a.started + a.seconds >= began
    ]
    print(f"\nWebhooks answered while PostgreSQL restarted (until {AFTER_RESTART:.0f} s after it was back):")
    print(f"  by status                      {by_status(webhooks)}")
    slowest = max((a.seconds for a in webhooks), default=0.0)
    print(f"  slowest                        {slowest:.2f} s  (Customer.io waits {CUSTOMERIO_WAITS:.0f} s)")
    everything = traffic.between(0, float("inf"), kinds=("queued", "sync"))
    print(f"Whole run, every webhook answer:  {by_status(everything)}")
    over = sum(1 for a in everything if a.seconds >= CUSTOMERIO_WAITS)
    slowest = max(a.seconds for a in everything)
    print(f"  slowest                        {slowest:.2f} s; {over} past {CUSTOMERIO_WAITS:.0f} s")
    odd = [a for a in everything if a.seconds >= CUSTOMERIO_WAITS or not isinstance(a.status, int)]
    for answer in sorted(odd, key=lambda a: a.started)[:10]:
        print(
            f"    t={answer.started - run_began:6.1f}  {answer.kind:6} web{answer.host + 1}  {answer.status}  "
            f"{answer.seconds:.2f} s"
        )


def app_api(control, began: float) -> None:
    calls = control.requests("/v1/")
    if os.environ.get("BENCH_HOSTS_DUMP"):  # the emulator's App API log, for a closer look
        Path(os.environ["BENCH_HOSTS_DUMP"]).write_text(json.dumps(calls))
    refused = [c["time"] - began for c in calls if c["status"] == 429]
    print("\nApp API (the emulator's log):")
    print(f"  requests                       {len(calls)}; answered 429: {len(refused)}")
    if refused:
        print("  429s at t=                     " + ", ".join(f"{t:.1f}" for t in refused[:20]))
    print(f"  most in any one second         {max_in_any_window([c['time'] for c in calls])} (limit {RATE})")


def drain(control, began: float, faults_ended: float, done_at: float | None) -> None:
    calls = [c["time"] for c in control.requests("/v1/")]
    print("\nDrain (every queued delivery finished and every synchronous one answered 200):")
    if done_at is None:
        print(f"  NOT DONE within {RUN_BUDGET} s")
        return
    floor = len(calls) / RATE
    took = done_at - began
    print(
        f"  whole run                      {took:.1f} s; floor {floor:.1f} s ({len(calls)} calls at {RATE}/s); "
        f"ratio {took / floor:.2f}"
    )
    after = [t for t in calls if t >= faults_ended]
    floor_after = len(after) / RATE
    took = done_at - faults_ended
    print(
        f"  after the last fault           {took:.1f} s; floor {floor_after:.1f} s ({len(after)} calls at {RATE}/s); "
        f"ratio {took / floor_after if floor_after else float('inf'):.2f}"
    )


def health(traffic: Traffic, began: float, ended: float, hosts: int) -> None:
    probes = traffic.between(0, float("inf"), kinds=("healthz",))
    during = [p for p in probes if began <= p.started <= ended + AFTER_RESTART]
    print("\n/healthz (every host, every 0.5 s):")
    slowest = max((p.seconds for p in during), default=0)
    print(f"  during the restart             {by_status(during)}; slowest {slowest:.2f} s")
    failing = [p for p in probes if p.started > began and p.status != 200]
    last_failing = max((p.started for p in failing), default=began)
    after = [p for p in probes if p.started > last_failing]
    print(
        f"  after                          200 on all {hosts} hosts from {max(0.0, last_failing - ended):.1f} s after "
        f"the database was back ({len(after)} probes since, {by_status(after)})"
    )
