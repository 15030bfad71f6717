"""Whether mail to a user's address arrives: marked undeliverable when Customer.io reports it does not (a reaction
to its message events, webhooks.message_events.reactions), read through users.access.has_deliverable_email."""

from datetime import datetime

from ..models import ActivityLog, User
from .activity import log_activity

REASON_LENGTH = User._meta.get_field("email_undeliverable_reason").max_length


def mark_email_undeliverable(user: User, reason: str, when: datetime) -> bool:
    """Mark the user's email undeliverable, with when and why. An address marked already keeps its first time and
    reason (the first bounce says most). Returns whether this call marked it; it is then in the activity log."""
    reason = reason[:REASON_LENGTH]
    marked = User.objects.filter(pk=user.pk, email_undeliverable=False).update(
        email_undeliverable=True, email_undeliverable_at=when, email_undeliverable_reason=reason
    )
    if not marked:
        return False
    user.email_undeliverable, user.email_undeliverable_at, user.email_undeliverable_reason = True, when, reason
    log_activity(
        ActivityLog.Source.CUSTOMERIO,
        f"Marked the email of {user.email} undeliverable: {reason}",
        level=ActivityLog.Level.NOTICE,
        user=user,
        context={"reason": reason},
    )
    return True
