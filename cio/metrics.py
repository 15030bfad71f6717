"""What the Customer.io wire counts for Prometheus (/metrics: webhooks.metrics): every HTTP attempt by API and
answer, and the seconds spent waiting for the shared App API rate limiter. Each process counts its own; under
gunicorn and `webhook_worker` the client's multiprocess mode sums them (docs/operations.md, "Metrics")."""

from prometheus_client import Counter

API_REQUESTS = Counter(
    "customerio_api_requests",
    "HTTP requests to Customer.io (every attempt, retries included), by API and HTTP status ('error': no answer).",
    ["api", "status"],
)
RATE_LIMIT_WAIT = Counter(
    "customerio_rate_limit_wait_seconds",
    "Seconds spent waiting for the shared App API rate limiter before sending.",
)
APIS = ("app", "track")


def count_api_call(sender, *, api: str, status: int | None, **kwargs) -> None:
    """Receiver of cio.transport.api_call_finished (connected in CioConfig.ready)."""
    API_REQUESTS.labels(api if api in APIS else "other", str(status) if status else "error").inc()
