"""Masking of secrets before anything is logged or stored.

Passwords, access keys and API keys must never reach the ActivityLog, a stored webhook body or a log line.
"""

import re
from collections.abc import Mapping

MASK = "********"

# What makes a name (a dictionary key, a query parameter, a header) a secret's: any name containing one of these,
# case-insensitively. "pass" covers user_pass, password, passwd, passphrase. The one list: the log scrubber
# (webhooks.logging) builds its patterns from it.
SECRET_NAME_PARTS = r"pass|pwd|secret|token|access[_-]?key|api[_-]?key|authorization|credential"  # noqa: S105
SECRET_KEY_PATTERN = re.compile(SECRET_NAME_PARTS, re.IGNORECASE)


def is_secret_key(key) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY_PATTERN.search(key))


def redact(value, also: frozenset[str] | set[str] = frozenset()):
    """A copy of `value` (dicts and lists, recursively) with the values of secret-looking keys masked, and of the
    keys named in `also` (e.g. the Customer.io attribute that receives returned passwords, whatever its name)."""
    if isinstance(value, Mapping):
        return {
            key: (MASK if (is_secret_key(key) or key in also) and item not in (None, "") else redact(item, also))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, also) for item in value]
    return value


def without_secrets(query: Mapping) -> dict:
    """A query-string dict with secret parameters (access_key above all) removed, not just masked, so that not even
    the key's length is kept."""
    return {key: value for key, value in query.items() if not is_secret_key(key)}
