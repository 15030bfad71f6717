"""How the site, its database and its queue are doing: GET /healthz for load balancers and uptime monitors, and the
figures `webhook_queue` prints.

/healthz answers 200 whenever the database answers, even with a long queue: a backlog during a Customer.io outage
must not make a load balancer pull every web node (alert on the queue with `webhook_queue --max-age`). It reads two
indexed aggregates, needs no key and no session, and never calls Customer.io.

Why not django-health-check (weighed for issue 22): its database check would replace one `except DatabaseError`,
and the figures monitors read here (waiting deliveries, the oldest one's age, the worker heartbeat) would still be
ours, as a custom check plus a view reshaping its JSON into this contract — more code to keep than this module, and a
dependency. Its cache check would fail the node when a shared Redis hiccups, though the site runs through that (the
cache is an optimisation here: configuration versions fall back to the database); its migrations check builds the
migration graph on every probe. So the check stays this small view.
"""

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError
from django.db.models import Count, Max, Min
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .models import WebhookDelivery, WorkerHeartbeat
from .outages import database_unavailable, outage

logger = logging.getLogger(__name__)

# Owed a result: accepted and waiting, waiting for a retry, or being processed.
OWED = (*WebhookDelivery.WAITING, WebhookDelivery.Status.PROCESSING)


@dataclass
class Backlog:
    waiting: int
    oldest_received_at: datetime | None

    def oldest_age(self, now: datetime) -> float | None:
        return (now - self.oldest_received_at).total_seconds() if self.oldest_received_at else None


def queue_backlog() -> Backlog:
    """Deliveries owed a result, and when the oldest of them arrived (one query)."""
    figures = WebhookDelivery.objects.filter(status__in=OWED).aggregate(n=Count("pk"), oldest=Min("received_at"))
    return Backlog(figures["n"], figures["oldest"])


def newest_heartbeat() -> datetime | None:
    return WorkerHeartbeat.objects.aggregate(newest=Max("seen_at"))["newest"]


def record_heartbeat(worker_id: str, started_at: datetime) -> None:
    """A worker's sign of life (one upsert)."""
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={"seen_at": timezone.now(), "host": socket.gethostname()[:255], "pid": os.getpid()},
        create_defaults={
            "seen_at": timezone.now(),
            "started_at": started_at,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
        },
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@never_cache
@require_safe
def healthz(request):
    try:
        backlog = queue_backlog()
        heartbeat = newest_heartbeat()
    except DatabaseError as exc:
        if database_unavailable(exc):
            outage.met(exc)  # one line for the whole outage, not one per probe
        else:
            # The class name only: a driver's message may name hosts and users.
            logger.error("Health check: the database is unreachable (%s)", type(exc).__name__)
        error = f"database unreachable: {type(exc).__name__}"
        response = JsonResponse({"status": "unavailable", "database": "unreachable", "error": error}, status=503)
        response._has_been_logged = True  # said above: not again as Django's ERROR line per probe
        return response
    now = timezone.now()
    return JsonResponse(
        {
            "status": "ok",
            "database": "ok",
            "deliveries_waiting": backlog.waiting,
            "oldest_waiting_seconds": _seconds(backlog.oldest_age(now)),
            "worker_heartbeat_seconds": _seconds((now - heartbeat).total_seconds() if heartbeat else None),
        }
    )
