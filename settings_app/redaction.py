"""Masking of secrets before anything is logged, stored or reported.

Passwords, access keys, API keys, set-password links and login links must never reach the ActivityLog, a stored
webhook body, a log line or an error report. Pure Python (no Django import): the log formatters and gunicorn's
configuration use it before Django is set up.
"""

import re
from collections.abc import Mapping

MASK = "********"

# What makes a name (a dictionary key, a query parameter, a header) a secret's: any name containing one of these,
# case-insensitively. "pass" covers user_pass, password, passwd, passphrase. The one list: the text scrubber below
# builds its patterns from it.
# "signing_key": the reporting webhook's (CUSTOMERIO_REPORTING_SIGNING_KEYS).
SECRET_NAME_PARTS = r"pass|pwd|secret|token|access[_-]?key|api[_-]?key|signing[_-]?key|authorization|credential"  # noqa: S105
SECRET_KEY_PATTERN = re.compile(SECRET_NAME_PARTS, re.IGNORECASE)


def is_secret_key(key) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY_PATTERN.search(key))


def redact(value, also: frozenset[str] | set[str] = frozenset()):
    """A copy of `value` (dicts and lists, recursively) with the values of secret-looking keys masked, and of the
    keys named in `also` (e.g. the Customer.io attribute that receives returned passwords, whatever its name); every
    other string scrubbed (a set-password or login link, say, under an innocent name)."""
    if isinstance(value, Mapping):
        return {
            key: (MASK if (is_secret_key(key) or key in also) and item not in (None, "") else redact(item, also))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, also) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def without_secrets(query: Mapping) -> dict:
    """A query-string dict with secret parameters (access_key above all) removed, not just masked, so that not even
    the key's length is kept."""
    return {key: value for key, value in query.items() if not is_secret_key(key)}


# A secret's name as is_secret_key decides it (any name containing a secret-looking part: access_key, X-Access-Key,
# user_pass, ...). Bounded, so that a long run of name characters in a log line costs linear time.
_SECRET_NAME = rf"[\w.-]{{0,64}}(?:{SECRET_NAME_PARTS})[\w.-]{{0,64}}"
# access_key=KEY in a URL or query string.
_SECRET_PARAM = re.compile(rf"(?i)((?<![\w.-]){_SECRET_NAME}=)[^&\s\"']*")
# 'access_key': 'KEY' in the repr of a dict (a view's parsed query).
_SECRET_ITEM = re.compile(rf"(?i)(['\"]{_SECRET_NAME}['\"]\s*:\s*)(?:'[^']*'|\"[^\"]*\")")
# The key in an Authorization header's value.
_BEARER = re.compile(r"(?i)(\bBearer\s+)[^\s'\"&<]+")
# The user:password of HTTP Basic auth (base64; the capital B and the alphabet keep "a basic plan" as it is).
_BASIC = re.compile(r"(\bBasic\s+)[A-Za-z0-9+/]{8,}={0,2}")
# The password of a URL's user information: postgres://site:PASSWORD@db/site, redis://:PASSWORD@cache:6379/0.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]{0,30}://[^:/@\s\"']{0,256}:)[^@\s/\"']{1,256}(?=@)")
# The token of a set-password link (the welcome email's, Django's password reset: /accounts/reset/<uidb64>/<token>/),
# which logs in whoever holds it until it is used. Django's own next step, /reset/<uidb64>/set-password/, is kept.
_SET_PASSWORD_TOKEN = re.compile(r"(/reset/[\w-]{1,64}/)(?!set-password(?:[/?#\s\"']|$))[^/?#&\s\"'<>]+")
# The token of a login link (users.services.login_links: /accounts/login-link/<token>/), which logs in whoever opens
# it first. Any case: a mistyped /Login-Link/... is a 404, whose log line quotes the path.
_LOGIN_LINK_TOKEN = re.compile(r"(?i)(/login-link/)[^/?#&\s\"'<>]+")


def secret_values(text: str) -> set[str]:
    """The values scrub() masks in `text`: an error report looks for them wherever else they appear."""
    found = set()
    patterns = (_SECRET_PARAM, _SECRET_ITEM, _BEARER, _BASIC, _SET_PASSWORD_TOKEN, _LOGIN_LINK_TOKEN, _URL_PASSWORD)
    for pattern in patterns:
        for match in pattern.finditer(text):
            found.add(match.group(0)[match.end(1) - match.start(0) :].strip("'\""))
    return found - {""}


# Literal pieces of SECRET_NAME_PARTS: a text without any of them (case-folded) holds no secret name. Python's regular
# expressions cost about 0.1 us per character of text, substring tests a hundredth of that: the patterns above run
# only on a text that may match them.
_NAME_PIECES = ("pass", "pwd", "secret", "token", "access", "api", "signing", "authorization", "credential")


def may_hold_secrets(text: str) -> bool:
    """False when neither scrub() nor redact() could change anything in `text`: none of the pieces of a secret's
    name (so no secret-looking key either), no credentials, no link with a token. A quick test of the JSON text of a
    whole dict before redacting it item by item (an ASCII text: case folding other letters can make ASCII ones)."""
    lowered = text.casefold()
    return (
        not text.isascii()
        or any(piece in lowered for piece in _NAME_PIECES)
        or "bearer" in lowered
        or "Basic" in text
        or ("://" in text and "@" in text)
        or "/reset/" in text
        or "/login-link/" in lowered
    )


def scrub(text: str) -> str:
    """`text` with secret query parameters, secret items of a dict's repr, Bearer and Basic credentials,
    set-password and login-link tokens and the passwords of URLs (a database's, Redis', a mail server's) masked."""
    lowered = text.casefold()
    if any(piece in lowered for piece in _NAME_PIECES):
        if "=" in text:
            text = _SECRET_PARAM.sub(rf"\g<1>{MASK}", text)
        if ":" in text:
            text = _SECRET_ITEM.sub(rf"\g<1>'{MASK}'", text)
    if "bearer" in lowered:
        text = _BEARER.sub(rf"\g<1>{MASK}", text)
    if "Basic" in text:
        text = _BASIC.sub(rf"\g<1>{MASK}", text)
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(rf"\g<1>{MASK}", text)
    if "/reset/" in text:
        text = _SET_PASSWORD_TOKEN.sub(rf"\g<1>{MASK}", text)
    if "/login-link/" in lowered:
        text = _LOGIN_LINK_TOKEN.sub(rf"\g<1>{MASK}", text)
    return text
