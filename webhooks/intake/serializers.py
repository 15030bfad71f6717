"""What a webhook request asks for, validated once into one typed value (WebhookInput): the action (from the one
registry, webhooks.actions), the contact, whether to queue it, and the delivery headers Customer.io repeats on its
retries. DRF's serializer slot; every error is one of webhooks.intake.exceptions (the project's JSON answers).

The contact, as WP Fusion reads it: `email` (Customer.io's body `{"email": "{{customer.email}}"}`), with `cio_id`
beside it when sent (recommended: the user is then found by cio_id first, so an email changed in Customer.io
follows the same user), or `cio_id` / `id` alone in workspaces that identify people that way; from the body, then
a `customer` object in it, then the query string.
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from users.emails import validate_email_address
from users.services.contacts import Contact
from users.text import clean_text

from ..actions import ACTIONS, WebhookAction
from ..deliveries import dedup_key
from ..payload import is_true, query_or_body
from . import refusals
from .exceptions import DuplicateParameter, InvalidContact, NoAction, NoContact, UnknownAction

# The query parameters the webhook reads: naming one twice is refused rather than letting the last one win.
READ_PARAMETERS = ("wpf_action", "access_key", "email", "cio_id", "id", "role", "send_notification", "async")
CONTACT_KINDS = ("email", "cio_id", "id")
# The User columns' lengths: the lock key and the delivery's contact_key must hold the value too.
CONTACT_LIMITS = {"email": 254, "cio_id": 64, "id": 64}
HEADER_LIMIT = 200
ACTION_LENGTH = refusals.ACTION_LENGTH


@dataclass(frozen=True)
class WebhookInput:
    action: WebhookAction
    body: dict
    query: dict  # {name: value}, cleaned (a %00 never reaches the database); still holds access_key when sent
    contact: Contact | None  # None for an action that touches nobody (`test`)
    in_background: bool  # `async=true`: record, queue and answer at once
    cio_delivery_id: str
    idempotency_key: str

    @property
    def dedup_key(self) -> str | None:
        return dedup_key(self.idempotency_key, self.cio_delivery_id)


def clean_query(query_dict) -> dict:
    """The query string as {name: value}, cleaned like a body; a parameter the webhook reads, named twice, is
    refused (`wpf_action=test&wpf_action=add`: which one was meant?)."""
    for name in READ_PARAMETERS:
        if len(query_dict.getlist(name)) > 1:
            raise DuplicateParameter(name)
    return {clean_text(key): clean_text(query_dict.get(key)) for key in query_dict}


def delivery_header(django_request, name: str) -> str:
    """A header Customer.io repeats on every retry of one delivery (x-cio-delivery-id, x-cio-idempotency-key),
    cleaned and cut to what the delivery's column holds."""
    return clean_text(django_request.headers.get(name) or "")[:HEADER_LIMIT]


def requested_action(query: dict) -> WebhookAction:
    name = str(query.get("wpf_action") or "")[:ACTION_LENGTH]
    if not name:
        raise NoAction()
    action = ACTIONS.get(name)
    if action is None:
        raise UnknownAction(f"Unknown action '{name}': use one of {', '.join(ACTIONS)}.")
    return action


class WebhookRequestSerializer(serializers.Serializer):
    """`data`: the parsed body. `context`: `action` (requested_action's: checked before the body is read),
    `query` (clean_query's) and `request` (Django's).

    Validation is written out in `to_internal_value` rather than as declared fields: the contact comes from three
    places in a fixed order, and DRF's per-request copy of declared fields would cost more than the checks."""

    def to_internal_value(self, body):
        action, query = self.context["action"], self.context["query"]
        return WebhookInput(
            action=action,
            body=body,
            query=query,
            contact=find_contact(body, query) if action.touches_user else None,
            in_background=is_true(query_or_body(query, body, "async")),
            cio_delivery_id=delivery_header(self.context["request"], "x-cio-delivery-id"),
            idempotency_key=delivery_header(self.context["request"], "x-cio-idempotency-key"),
        )

    def to_representation(self, instance):
        raise NotImplementedError("input only: the answers are built by webhooks.intake.answers")


def find_contact(body: dict, query: dict) -> Contact:
    customer = body.get("customer")
    sources = [body, customer if isinstance(customer, dict) else {}, query]
    found = {kind: _identifier(sources, kind) for kind in CONTACT_KINDS}
    if found["email"]:
        return Contact("email", found["email"], cio_id=found["cio_id"])
    for kind in ("cio_id", "id"):
        if found[kind]:
            return Contact(kind, found[kind])
    raise NoContact()


def _identifier(sources: list[dict], kind: str) -> str:
    """The first non-empty value of one identifier among the sources, checked."""
    for source in sources:
        value = source.get(kind)
        if value is None or value == "":
            continue
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise InvalidContact(f"'{kind}' must be a string.")
        value = str(value).strip()
        if not value:
            continue
        if kind == "email":
            try:
                validate_email_address(value)
            except DjangoValidationError:
                raise InvalidContact("'email' is not a valid email address.") from None
        if len(value) > CONTACT_LIMITS[kind]:
            raise InvalidContact(f"'{kind}' is too long.")
        return value
    return ""
