"""Running one action for one contact and turning what happened into the delivery's outcome — the same rules for
the synchronous webhook and the background worker."""

import logging
import traceback as traceback_module
from dataclasses import dataclass

from django.db import DatabaseError

from cio import errors as cio_errors
from cio.client import deadline_in
from users.models import User
from users.services import accounts
from users.services.accounts import ActionRequest, ResultStatus
from users.services.activity import lines_for_delivery
from users.services.contacts import Contact, IdentityConflict
from users.services.outbox import from_customerio

from . import deliveries
from .actions import ACTIONS, WebhookAction
from .log_context import delivery_context
from .models import WebhookDelivery
from .outages import database_unavailable, outage
from .payload import WebhookOptions

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status


@dataclass
class Outcome:
    status: str  # a WebhookDelivery status: succeeded | skipped | failed
    http_status: int
    result: dict
    error: str = ""
    retryable: bool = False  # may succeed later (Customer.io trouble): the queue retries, Customer.io retries sync
    user: User | None = None
    traceback: str = ""  # of an unexpected exception, for the delivery's record


def failure(http_status: int, code: str, detail: str, *, retryable=False, with_traceback=False) -> Outcome:
    """A failed outcome. with_traceback: called inside an `except` block whose traceback is worth keeping."""
    return Outcome(
        Status.FAILED,
        http_status,
        {"error": code, "detail": detail},
        error=f"{code}: {detail}",
        retryable=retryable,
        traceback=traceback_module.format_exc()[-10000:] if with_traceback else "",
    )


def request_for_delivery(
    delivery: WebhookDelivery,
    contact: Contact,
    *,
    person: dict | None,
    deadline_seconds: float,
    body: dict | None = None,
    query: dict | None = None,
    may_reuse: bool = False,
) -> ActionRequest:
    """The account services' request for processing `delivery`: its options (role=, send_notification=) from its
    body and query, and the person's attributes when the caller has them. `body`/`query`: the request's own, when
    the caller has them (the stored body has password fields masked); else the stored ones. `may_reuse`: the
    delivery may answer with the result of a processing of the same contact that read Customer.io after it was
    received, for an action at least as strong (a synchronous webhook waiting behind another); the copies of it
    received shortly before tell when it counts as received (users.services.accounts.recent_reads)."""
    options = WebhookOptions.from_request(
        (delivery.body if body is None else body) or {}, (delivery.query if query is None else query) or {}
    )
    copies = []
    if may_reuse:
        since = accounts.copies_since(delivery.received_at)
        copies = [accounts.Copy(*copy) for copy in deliveries.copies_of(delivery, since)]
    return ActionRequest(
        contact=contact,
        role=options.role,
        send_notification=options.send_notification,
        deadline=deadline_in(deadline_seconds),
        delivery=delivery,
        person=person,
        received_at=delivery.received_at,
        strength=ACTIONS[delivery.action].strength if delivery.action in ACTIONS else 0,
        may_reuse=may_reuse,
        copies=copies,
    )


def run_action(action: WebhookAction, request: ActionRequest | None) -> Outcome:
    """Run the action (`request` is None for one that touches nobody); every activity line, log line and error
    report written meanwhile names the delivery."""
    if action.handler is None:
        return Outcome(Status.SUCCEEDED, 200, {"status": "ok", "action": action.name})
    delivery_id = getattr(request.delivery, "pk", None)
    # What Customer.io told the site is never sent back to it (users.services.outbox).
    with lines_for_delivery(delivery_id), delivery_context(delivery_id, action.name), from_customerio():
        return _run(action, request)


def _run(action: WebhookAction, request: ActionRequest) -> Outcome:
    try:
        result = action.handler(request)
    except cio_errors.ContactNotFound:
        return failure(422, "contact_not_found", f"Customer.io has no contact {request.contact}.")
    except accounts.ContactHasNoEmail as exc:
        return failure(422, "contact_has_no_email", str(exc))
    except IdentityConflict as exc:
        return failure(422, "identity_conflict", str(exc))
    except accounts.PasswordReturnFailed as exc:
        return failure(502, "upstream_error", str(exc), retryable=True)
    except cio_errors.CustomerIOError as exc:
        logger.warning("%s for %s: Customer.io error: %s", action.name, request.contact, exc)
        # A wrong or missing key is fixed by the site admin, not by time; retrying gives them that time.
        retryable = exc.retryable or isinstance(exc, cio_errors.Unauthorized | cio_errors.NotConfigured)
        return failure(502, "upstream_error", f"Customer.io: {exc}", retryable=retryable)
    except DatabaseError as exc:
        if database_unavailable(exc):
            outage.met(exc)  # one line for the whole outage, not a traceback per contact
        else:
            logger.exception("%s for %s: database error", action.name, request.contact)
        return failure(
            503, "database_busy", "The site's database failed; try again.", retryable=True, with_traceback=True
        )
    except Exception:
        logger.exception("%s for %s failed", action.name, request.contact)
        return failure(500, "internal_error", "The site failed to process this webhook.", with_traceback=True)
    status = Status.SKIPPED if result.status == ResultStatus.SKIPPED else Status.SUCCEEDED
    return Outcome(status, 200, result.as_dict(), user=result.user)
