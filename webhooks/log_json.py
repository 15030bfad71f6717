"""LOG_FORMAT=json: one JSON object per log line (python-json-logger), for log systems that read fields.

Every line has the same keys first — time (UTC, ISO 8601), level, logger, message, request_id, delivery_id, action
(null where there is none) — then the record's own extras (gunicorn's access line: method, path, status, ...), and
exc_info with the traceback when there is one. The handler's RedactSecretsFilter has already scrubbed the message
and its arguments; every string that reaches the line is scrubbed once more here, extras and traceback included, and
a few extras are left out whole: Django's request object (its repr holds the full URL) and the development server's
socket.

Imports no Django module: gunicorn's configuration uses it before Django is set up.
"""

import logging
from datetime import UTC, datetime

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from settings_app.redaction import MASK, is_secret_key, scrub

FIELDS = ["asctime", "levelname", "name", "message", "request_id", "delivery_id", "action"]
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
# Record attributes never written: the standard ones not in FIELDS, and objects whose text would be a leak or noise.
LEFT_OUT = {*RESERVED_ATTRS, "request", "server_time", "color_message"}


class JsonFormatter(_JsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", FIELDS)
        kwargs.setdefault("rename_fields", RENAMED)
        kwargs.setdefault("rename_fields_keep_missing", True)
        kwargs.setdefault("reserved_attrs", LEFT_OUT)
        super().__init__(*args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:  # noqa: N802 (logging's name)
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict) -> dict:
        return {key: _safe(key, value) for key, value in log_data.items()}


def _safe(key, value):
    """The value as it may be written: secrets masked in every string, and whatever is not plain JSON written as its
    scrubbed text (never an object's repr unscrubbed)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if key not in RENAMED.values() and key not in ("message", "exc_info") and is_secret_key(key):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {str(name): _safe(str(name), item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_safe("", item) for item in value]
    return scrub(str(value))
