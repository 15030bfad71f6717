"""Events for Customer.io: what people do on the site, for journeys to react to.

    from users.tracking import track

    track(request.user, "course_completed", {"course": "Intro to pottery", "score": 92})

The event is queued in the caller's transaction (one row, no Customer.io call in the request) and sent by the
background worker with other events and profile changes in /api/v2/batch requests; a journey triggered by the event
"course_completed" can use `{{event.course}}`. Nothing is sent for staff accounts (unless the settings say so), when
the Track API credentials are not set, or for a change Customer.io itself caused.
"""

import json

from settings_app.models import WebhookSettings
from settings_app.redaction import is_secret_key

from .models import User
from .services.outbox import EVENT_NAME_MAX_LENGTH, record_event

# Customer.io refuses an entry over 32 KB; the person's identifiers and the envelope take the rest.
EVENT_DATA_MAX_BYTES = 30 * 1024


def track(user: User, name: str, data: dict | None = None) -> bool:
    """Record the event `name` (with `data`, a JSON object) for `user`. Returns whether it was queued (False for a
    user the site does not send, see above). Raises ValueError for a bad name, data that is not a JSON object of
    at most 30 KB, or data naming a password, token or key: nothing secret is ever sent on the site's initiative."""
    if user is None or user.pk is None:
        raise ValueError("Events are tracked for a saved user.")
    if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > EVENT_NAME_MAX_LENGTH:
        raise ValueError(f"An event name is 1 to {EVENT_NAME_MAX_LENGTH} characters, without spaces around it.")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValueError("Event data is a dict (a JSON object).")
    try:
        encoded = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Event data must be JSON: {exc}") from None
    if len(encoded.encode()) > EVENT_DATA_MAX_BYTES:
        raise ValueError(f"Event data is larger than {EVENT_DATA_MAX_BYTES // 1024} KB, which Customer.io refuses.")
    secret = _secret_key_in(data)
    if secret:
        raise ValueError(f"Event data names {secret!r}, which looks like a secret: it is never sent to Customer.io.")
    return record_event(user, name, data) is not None


def track_if_enabled(setting: str, user: User, name: str, data: dict | None = None) -> None:
    """A built-in event (login, password_reset, tag_applied_on_site, access_refused), sent only while its setting
    (a WebhookSettings field, off by default) is on."""
    if getattr(WebhookSettings.cached(), setting):
        track(user, name, data)


def _secret_key_in(value) -> str | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if is_secret_key(key):
                return key
            if found := _secret_key_in(item):
                return found
    elif isinstance(value, list):
        for item in value:
            if found := _secret_key_in(item):
                return found
    return None
