"""GET /metrics: Prometheus' text format (OpenMetrics when the scraper asks for it), for a scraper holding
METRICS_TOKEN.

- Off (404, as any unknown page) while METRICS_TOKEN is unset; 401 with a Bearer challenge for a missing or wrong
  token, compared in constant time. The token is never logged or echoed.
- The counts of every process (files.py: gunicorn's workers and each `webhook_worker` with PROMETHEUS_MULTIPROC_DIR;
  this process's own without it) and the queue's figures from the database (collector.py).
- No access rule covers it and it skips the site middleware (sessions, CSRF, logins, django-axes: a scraper has no
  use for them); the webhook's refused-request throttle is the webhook's only. Exempt from the HTTPS redirect, as
  /healthz is: a Prometheus on the same host scrapes gunicorn over loopback (SECURE_REDIRECT_EXEMPT).
"""

from django.conf import settings
from django.http import Http404, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from users.access import never_locked

from ..intake.middleware import skips_site_middleware
from . import files
from .collector import QueueCollector


class _ThisProcess:
    """The client's default registry (this process's counts), for a site run without multiprocess mode."""

    def collect(self):
        return REGISTRY.collect()


def registry() -> CollectorRegistry:
    """What one scrape reads: every process's counts and the queue's figures."""
    scraped = CollectorRegistry(auto_describe=False)
    path = files.directory()
    if path:
        files.LockedMultiProcessCollector(scraped, path)
    else:
        scraped.register(_ThisProcess())
    scraped.register(QueueCollector())
    return scraped


@sensitive_variables()
def _authorized(request) -> bool:
    scheme, _, presented = (request.META.get("HTTP_AUTHORIZATION") or "").strip().partition(" ")
    return scheme.lower() == "bearer" and constant_time_compare(presented.strip(), settings.METRICS_TOKEN)


@skips_site_middleware
@never_locked
@never_cache
@require_safe
def metrics(request):
    if not settings.METRICS_TOKEN:
        raise Http404("Metrics are off (METRICS_TOKEN is not set).")
    if not _authorized(request):
        refused = HttpResponse(
            "A valid Authorization: Bearer token is required.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
        refused._has_been_logged = True  # no django.request line per guess: a token of 32+ characters is not guessed
        return refused
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry()), content_type=content_type)
