"""Running one action for one contact and turning what happened into the delivery's outcome — the same rules for
the synchronous webhook and the background worker."""

import logging
import traceback as traceback_module
from dataclasses import dataclass

from django.db import DatabaseError

from cio import errors as cio_errors
from users.models import User
from users.services import accounts

from .models import WebhookDelivery

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status

# The strongest action wins when one contact's waiting deliveries are processed together.
ACTION_STRENGTH = {"update_tags": 1, "update": 2, "add": 3}


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


def run_action(action: str, request: accounts.ActionRequest) -> Outcome:
    try:
        result = accounts.ACTIONS[action](request)
    except cio_errors.ContactNotFound:
        return failure(422, "contact_not_found", f"Customer.io has no contact {request.contact}.")
    except accounts.ContactHasNoEmail as exc:
        return failure(422, "contact_has_no_email", str(exc))
    except accounts.PasswordReturnFailed as exc:
        return failure(502, "upstream_error", str(exc), retryable=True)
    except cio_errors.CustomerIOError as exc:
        logger.warning("%s for %s: Customer.io error: %s", action, request.contact, exc)
        # A wrong or missing key is fixed by the site admin, not by time; retrying gives them that time.
        retryable = exc.retryable or isinstance(exc, cio_errors.Unauthorized | cio_errors.NotConfigured)
        return failure(502, "upstream_error", f"Customer.io: {exc}", retryable=retryable)
    except DatabaseError:
        logger.exception("%s for %s: database error", action, request.contact)
        return failure(
            503, "database_busy", "The site's database failed; try again.", retryable=True, with_traceback=True
        )
    except Exception:
        logger.exception("%s for %s failed", action, request.contact)
        return failure(500, "internal_error", "The site failed to process this webhook.", with_traceback=True)
    status = Status.SKIPPED if result.status == "skipped" else Status.SUCCEEDED
    return Outcome(status, 200, result.as_dict(), user=result.user)
