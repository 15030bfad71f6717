"""Error reports to Sentry, when SENTRY_DSN is set: the official SDK with its Django integration, and nothing secret
in what it sends.

An event can hold the request (URL, query string, headers, body), exception messages, every frame's local variables,
log records and the breadcrumbs gathered before it. Any of those may carry the webhook's access key (in the URL, a
header, Basic auth), a password (a body's user_pass, a generated one in a local variable), a Customer.io API key, a
set-password link or a login link. So every event is cleaned here before it leaves, in two passes:

1. every value under a secret-looking name (settings_app.redaction.is_secret_key: access_key, X-Access-Key,
   Authorization, user_pass, password, api_key, token, ...) or under the name of a Customer.io attribute that carries
   passwords (the field mappings, Return Password's field) is masked, and every string is scrubbed as log lines are
   (settings_app.redaction.scrub: `access_key=` parameters, dict items, Bearer tokens, set-password and login-link
   tokens);
2. the secret values themselves — those just masked, the site's access keys (current and previous), the Customer.io
   API keys, the reporting webhook's signing keys and Django's SECRET_KEY — are masked wherever else they appear: an
   exception's message, a local variable with an innocent name, a breadcrumb.

send_default_pii stays off (no cookies, no user, no client address; Authorization and cookie headers filtered by the
SDK), and the SDK's own EventScrubber runs first, for the names it knows that ours does not. Breadcrumbs are cleaned
as they are recorded (first pass only: it runs for each log line and query), and again with the event. Each event is
tagged with the request id, and the delivery id and action, when it has them (webhooks.log_context).
"""

import warnings
from urllib.parse import urlsplit

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from settings_app.redaction import MASK, is_secret_key, scrub, secret_values

from .log_context import delivery, request_id

# Shorter values are not searched for elsewhere in an event: "True", a role name ... would mask half of it.
_SHORTEST_SECRET = 6
# The SDK's own scrubber runs before before_send, and would put "[Filtered]" where ours must read a secret to find it
# elsewhere in the event: it keeps the names of its list that ours does not cover (cookies, sessions, CSRF, "auth").
_SDK_DENYLIST = [name for name in DEFAULT_DENYLIST if not is_secret_key(name)]
# What the SDK leaves in place of a value it filtered itself.
_ALREADY_MASKED = {"", MASK, "[Filtered]"}


def start(dsn: str, *, environment: str = "", release: str = "", traces_sample_rate: float = 0.0, transport=None):
    """Send error reports to `dsn`. `transport`: the SDK's Transport to use instead of HTTP (tests)."""
    with warnings.catch_warnings():
        # The SDK now prefers `data_collection`, but passing that switches its EventScrubber off; send_default_pii
        # (deprecated in 2.x, still honoured) keeps both its no-PII defaults and the scrubber.
        warnings.filterwarnings("ignore", "The send_default_pii option is deprecated", DeprecationWarning)
        sentry_sdk.init(
            dsn=dsn,
            # Spans around each signal receiver only when traces are sent: the SDK builds them on every request.
            integrations=[DjangoIntegration(signals_spans=bool(traces_sample_rate))],
            send_default_pii=False,
            environment=environment or None,
            release=release or None,
            # None, not 0, when no traces are wanted: with 0 the SDK still builds an unsampled transaction and a
            # span per signal receiver and query on every request (about 0.5 ms of CPU on the webhook).
            traces_sample_rate=traces_sample_rate or None,
            before_send=before_send,
            before_send_transaction=before_send,
            before_breadcrumb=before_breadcrumb,
            event_scrubber=EventScrubber(denylist=_SDK_DENYLIST),
            # No release-health sessions: errors are what this is for, and only they leave.
            auto_session_tracking=False,
            transport=transport,
        )


def before_send(event: dict, hint: dict) -> dict:
    found: set[str] = set()
    event = _cleaned(event, found, _secret_attribute_names())
    found |= _known_secrets()
    found = {value for value in found if len(value) >= _SHORTEST_SECRET}
    if found:
        event = _without_values(event, sorted(found, key=len, reverse=True))
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict):
        delivery_id, action = delivery.get()
        for name, value in (("request_id", request_id.get()), ("delivery_id", delivery_id), ("action", action)):
            if value is not None:
                tags[name] = str(value)
    return event


def before_breadcrumb(crumb: dict, hint: dict) -> dict:
    if crumb.get("category") == "query" and not crumb.get("data"):
        # A statement's text, with its placeholders and without their values (send_default_pii is off): nothing to
        # scrub, and every query of every request makes one. before_send still cleans it with an event.
        return crumb
    return _cleaned(crumb, None, frozenset())


def _cleaned(value, found: set[str] | None, also):
    """A copy of `value` with secret-named values masked and every string scrubbed (what was masked is added to
    `found`, unless it is None); anything that is not JSON data becomes its scrubbed text."""
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if (is_secret_key(key) or key in also) and not (isinstance(item, str) and item in _ALREADY_MASKED):
                if found is not None:
                    _collect(item, found)
                cleaned[key] = MASK
            else:
                cleaned[key] = _cleaned(item, found, also)
        return cleaned
    if isinstance(value, list | tuple):
        return [_cleaned(item, found, also) for item in value]
    if not isinstance(value, str):
        if value is None or isinstance(value, bool | int | float):
            return value
        value = str(value)
    if found is not None:
        found |= secret_values(value)
    return scrub(value)


def _collect(value, found: set[str]) -> None:
    if isinstance(value, str):
        found.add(value)
        found.add(value.strip("'\""))  # a frame variable's value is its repr
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, found)


def _without_values(value, secrets: list[str]):
    if isinstance(value, dict):
        return {key: _without_values(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_values(item, secrets) for item in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
    return value


def _known_secrets() -> set[str]:
    from django.conf import settings

    values = {
        getattr(settings, name, "")
        for name in ("SECRET_KEY", "CUSTOMERIO_APP_API_KEY", "CUSTOMERIO_TRACK_API_KEY", "METRICS_TOKEN")
    }
    # The passwords of the database, the mail server and Redis, wherever a report may carry them outside a URL.
    values.update(str(database.get("PASSWORD") or "") for database in settings.DATABASES.values())
    values.add(getattr(settings, "EMAIL_HOST_PASSWORD", ""))
    values.add(urlsplit(getattr(settings, "REDIS_URL", "") or "").password or "")
    values.update(getattr(settings, "CUSTOMERIO_REPORTING_SIGNING_KEYS", []))
    try:
        from settings_app.models import WebhookSettings

        site = WebhookSettings.cached()
        values.add(site.access_key)
        values.update(str(entry.get("key") or "") for entry in site.previous_access_keys or [])
    except Exception:  # noqa: S110 (the report is about a failure; the database may be part of it)
        pass
    return {value for value in values if isinstance(value, str) and value}


def _secret_attribute_names() -> frozenset[str]:
    """Customer.io attributes that carry passwords or login links, whatever their names (a body holds them)."""
    try:
        from settings_app.models import WebhookSettings
        from users.services.accounts import secret_attribute_names

        return frozenset(secret_attribute_names(WebhookSettings.cached()))
    except Exception:
        return frozenset()
