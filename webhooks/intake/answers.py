"""What the webhook answers once a request is recorded: a delivery opened (new, a retry, or one already done or in
progress) or processed becomes the response Customer.io reads."""

from rest_framework.response import Response

from ..deliveries import Opened, OpenState

# Seconds a retry of a delivery still being processed is asked to wait (Customer.io honours Retry-After).
IN_PROGRESS_RETRY_AFTER = 5


def outcome_answer(outcome) -> Response:
    """A processing's outcome (webhooks.processing.Outcome), as its status and result."""
    return Response(outcome.result, status=outcome.http_status)


def repeated_answer(opened: Opened) -> Response | None:
    """The answer to a retry of a delivery done or being processed; None when this request is to be processed."""
    if opened.state == OpenState.DONE:
        return Response({**(opened.delivery.result or {}), "duplicate": True})
    if opened.state == OpenState.BUSY:
        return Response(
            {"error": "in_progress", "detail": "This delivery is still being processed; try again shortly."},
            status=503,
            headers={"Retry-After": str(IN_PROGRESS_RETRY_AFTER)},
        )
    return None


def queued_answer(opened: Opened) -> Response:
    """Queued mode: a new delivery is queued; a retry of one done answers its first result, of one waiting or in
    progress says so."""
    if opened.state == OpenState.DONE:
        return Response({**(opened.delivery.result or {}), "duplicate": True})
    answer = {"status": "queued", "delivery_id": opened.delivery_id}
    if opened.state == OpenState.BUSY:
        answer["duplicate"] = True
    return Response(answer)
