"""Reading a webhook's body: DRF's parser slot.

Customer.io sends `{"email": "{{customer.email}}"}`, but the Content-Type it sends is whatever the journey's author
chose (and `curl -d` says form-urlencoded), so a body is read as JSON whenever it looks like JSON and as a form
otherwise; multipart forms are read too. Every parser reads at most WEBHOOK_MAX_BODY_BYTES (413 past it); an
empty body is DRF's own case (no parser runs). Strings come back cleaned of what no database stores (NUL, lone
surrogates), and JSON nested deeper than MAX_JSON_DEPTH is refused before anything walks it.
"""

import json
import math
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import QueryDict
from rest_framework.parsers import BaseParser, MultiPartParser

from users.text import TooDeep, clean_structure, clean_text

from .exceptions import InvalidPayload, LengthRequired, PayloadTooLarge

# Customer.io bodies are a level or three deep; deeper ones are refused before anything walks them.
MAX_JSON_DEPTH = 32
TOO_DEEP = f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels."


def refuse_declared_oversize(django_request) -> None:
    """413 before reading a body whose Content-Length says it is too large (a chunked one is measured as read:
    webhooks.intake.framing gives it its length, or refuses it here on a server that cannot de-chunk it)."""
    if django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        raise LengthRequired()
    try:
        length = int(django_request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.WEBHOOK_MAX_BODY_BYTES:
        raise PayloadTooLarge()


def read_limited(stream) -> bytes:
    """The body, read one byte past the limit at most: a body without Content-Length (chunked) cannot make us read
    more than that."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge()
    return raw


def parse_json_or_form(raw: bytes) -> dict:
    """JSON when the body looks like JSON, else a form (`email=…&role=…`)."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayload("The body is neither JSON nor a form (not UTF-8).") from None
    stripped = text.strip()
    if stripped[:1] in '{["' or stripped in ("null", "true", "false"):
        return parse_json_object(stripped)
    try:
        pairs = parse_qsl(stripped, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidPayload() from None
    return {clean_text(key): clean_text(value) for key, value in pairs}


def parse_json_object(text: str) -> dict:
    """A JSON object, cleaned of what no database stores; InvalidPayload saying what is wrong otherwise."""
    try:
        parsed = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except RecursionError:
        raise InvalidPayload(TOO_DEEP) from None
    except ValueError:
        raise InvalidPayload("The body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise InvalidPayload("The JSON body must be an object.")
    try:
        return clean_structure(parsed, MAX_JSON_DEPTH)
    except TooDeep:
        raise InvalidPayload(TOO_DEEP) from None


def _not_json(constant: str):
    # Python reads NaN and Infinity, JSON has neither (PostgreSQL's jsonb refuses them: a 500 when stored).
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e999
        raise ValueError("the number is out of range")
    return number


class JsonOrFormParser(BaseParser):
    """JSON or a urlencoded form, whatever the Content-Type says (WebhookNegotiation picks it for every type but
    multipart). Not DRF's JSONParser: that one reads the whole body first and answers its own error shapes."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        return parse_json_or_form(read_limited(stream))


class JsonObjectParser(BaseParser):
    """JSON only, whatever the Content-Type says: the reporting webhook's events (Customer.io sends them as JSON).
    The body was read already, to check its signature (webhooks.intake.signatures): this parses those bytes."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        raw = read_limited(stream)
        try:
            return parse_json_object(raw.decode("utf-8").strip())
        except UnicodeDecodeError:
            raise InvalidPayload("The body is not UTF-8.") from None


class LimitedMultiPartParser(MultiPartParser):
    """A multipart form's fields as a plain dict (the last value of a repeated field, as for urlencoded forms);
    uploaded files are ignored. The size limit is checked on Content-Length before this runs (the view)."""

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        try:
            parsed = super().parse(stream, media_type, parser_context)
        except Exception as error:  # DRF's ParseError, Django's MultiPartParserError and their kin
            raise InvalidPayload(f"The multipart body could not be read: {type(error).__name__}.") from None
        return form_fields(parsed.data)


def form_fields(data: QueryDict) -> dict:
    return {clean_text(key): clean_text(value) for key, value in data.items()}
