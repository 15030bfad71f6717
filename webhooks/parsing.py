"""Reading a webhook request: the action, the contact and the options, from the body and the query string."""

import json
import math
from urllib.parse import parse_qsl

from django.core.exceptions import ValidationError
from django.views.decorators.debug import sensitive_variables

from users.emails import validate_email_address
from users.services.contacts import Contact
from users.text import TooDeep, clean_structure, clean_text

# Customer.io bodies are a level or three deep; deeper ones are refused before anything walks them.
MAX_JSON_DEPTH = 32


class WebhookInputError(Exception):
    """Bad input: answered with a 4xx JSON error."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def parse_body(raw: bytes) -> dict:
    """JSON whatever the Content-Type says (Customer.io users can change it), else a form body. Strings come back
    cleaned of what no database stores (NUL, lone surrogates); nesting deeper than MAX_JSON_DEPTH is refused."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookInputError(400, "invalid_payload", "The body is neither JSON nor a form (not UTF-8).") from None
    stripped = text.strip()
    if stripped[:1] in '{["' or stripped in ("null", "true", "false"):
        try:
            parsed = json.loads(stripped, parse_constant=_not_json, parse_float=_finite_float)
        except RecursionError:
            raise WebhookInputError(400, "invalid_payload", _too_deep()) from None
        except ValueError:
            raise WebhookInputError(400, "invalid_payload", "The body is not valid JSON.") from None
        if not isinstance(parsed, dict):
            raise WebhookInputError(400, "invalid_payload", "The JSON body must be an object.")
        try:
            return clean_structure(parsed, MAX_JSON_DEPTH)
        except TooDeep:
            raise WebhookInputError(400, "invalid_payload", _too_deep()) from None
    try:
        pairs = parse_qsl(stripped, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise WebhookInputError(400, "invalid_payload", "The body is neither JSON nor a form.") from None
    return {clean_text(key): clean_text(value) for key, value in pairs}


def _not_json(constant: str):
    # Python reads NaN and Infinity, JSON has neither (PostgreSQL's jsonb refuses them: a 500 when stored).
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e999
        raise ValueError("the number is out of range")
    return number


def _too_deep() -> str:
    return f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels."


def clean_query(query_dict) -> dict:
    """The query string as {name: last value}, cleaned like a body (a %00 must not reach the database)."""
    return {clean_text(key): clean_text(query_dict.get(key)) for key in query_dict}


@sensitive_variables()  # the key in its locals must never reach an error report
def presented_key(django_request, query: dict) -> str:
    """The access key the caller sent: `Authorization: Bearer KEY` or `X-Access-Key: KEY` (recommended: the key
    stays out of URLs and access logs), else `access_key=` in the query string (WP Fusion's URL format)."""
    authorization = django_request.headers.get("authorization") or ""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    header_key = (django_request.headers.get("x-access-key") or "").strip()
    if header_key:
        return header_key
    return query.get("access_key") or ""


def find_contact(body: dict, query: dict) -> Contact:
    """The person the webhook is about: `email` (Customer.io body {"email": "{{customer.email}}"}), with `cio_id`
    beside it when sent (recommended: the user is then found by cio_id first, so an email changed in Customer.io
    follows the same user), or `cio_id` / `id` alone in workspaces that identify people that way; the body first,
    then the query string."""
    sources = [body, body.get("customer") if isinstance(body.get("customer"), dict) else {}, query]
    found = {kind: _identifier(sources, kind) for kind in ("email", "cio_id", "id")}
    if found["email"]:
        return Contact("email", found["email"], cio_id=found["cio_id"])
    for kind in ("cio_id", "id"):
        if found[kind]:
            return Contact(kind, found[kind])
    raise WebhookInputError(
        400,
        "no_contact",
        'No contact in the request: send {"email": "{{customer.email}}", "cio_id": "{{customer.cio_id}}"}.',
    )


def _identifier(sources: list[dict], kind: str) -> str:
    """The first non-empty value of one identifier among the sources, checked."""
    for source in sources:
        value = source.get(kind)
        if value is None or value == "":
            continue
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise WebhookInputError(400, "invalid_contact", f"'{kind}' must be a string.")
        value = str(value).strip()
        if not value:
            continue
        if kind == "email":
            try:
                validate_email_address(value)
            except ValidationError:
                raise WebhookInputError(400, "invalid_contact", "'email' is not a valid email address.") from None
        # cio_id: the User column's length; the lock key and the delivery's contact_key must hold it too.
        limit = 254 if kind == "email" else 64
        if len(value) > limit:
            raise WebhookInputError(400, "invalid_contact", f"'{kind}' is too long.")
        return value
    return ""
