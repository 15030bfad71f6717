"""The admin's reactions to message events (MessageReaction): for an event about a user, apply a tag, remove a tag,
or mark the user's email undeliverable.

Tags change through users.access.apply_tags / remove_tags, the same calls the site's own code makes, so a manual
segment's tag reaches Customer.io through the segment-change outbox and the tag signals go out as for any change.
None of them touches a role, a password or staff status: a staff account gets a tag as users.access allows it.
"""

import logging
from dataclasses import dataclass

from cio.errors import CustomerIOError
from users.access import NotAManualSegment, UnknownTag, apply_tags, remove_tags
from users.emails import normalize_email
from users.models import ActivityLog, User
from users.services.activity import log_activity
from users.services.deliverability import mark_email_undeliverable
from users.services.segment_changes import ensure_manual

from ..models import MessageEvent, MessageReaction

logger = logging.getLogger(__name__)

Kind = MessageReaction.Kind


@dataclass(frozen=True)
class Reactions:
    """The enabled reactions, read once per batch of events (a handful of rows)."""

    rows: tuple[MessageReaction, ...]

    @classmethod
    def load(cls) -> "Reactions":
        return cls(tuple(MessageReaction.objects.filter(enabled=True).select_related("tag").order_by("id")))

    def learn_tag_kinds(self) -> None:
        """Ask Customer.io, once per tag, whether a reaction's tag the site has not classified yet (first seen through
        a webhook) is a manual segment: apply_tags would ask inside the batch's transaction, which on SQLite holds
        the database's write lock meanwhile. A tag Customer.io cannot classify now is asked about again by the
        reaction itself, which then fails with a warning if it must."""
        for reaction in self.rows:
            if reaction.tag is not None and not reaction.tag.kind:
                try:
                    ensure_manual([reaction.tag])
                except (NotAManualSegment, CustomerIOError) as problem:
                    logger.warning("Could not tell the kind of tag %s: %s", reaction.tag, problem)

    def for_event(self, event: MessageEvent) -> list[MessageReaction]:
        return [
            reaction
            for reaction in self.rows
            if reaction.metric == event.metric and reaction.channel in ("", event.channel)
        ]


def react(event: MessageEvent, user: User, reactions: list[MessageReaction]) -> None:
    """Run the event's reactions for its user. A reaction that cannot be done (a data-driven segment, Customer.io
    down while the site learns a segment's kind) is written to the activity log as a warning and the others go on."""
    for reaction in reactions:
        try:
            _run(reaction, event, user)
        except (NotAManualSegment, UnknownTag, CustomerIOError) as problem:
            log_activity(
                ActivityLog.Source.CUSTOMERIO,
                f"Could not {'apply' if reaction.kind == Kind.APPLY_TAG else 'remove'} tag {reaction.tag} for "
                f"{user.email} on the {_what(event)}: {problem}",
                level=ActivityLog.Level.WARNING,
                user=user,
                context={"event_id": event.event_id, "reaction": reaction.pk},
            )


def _run(reaction: MessageReaction, event: MessageEvent, user: User) -> None:
    if reaction.kind == Kind.MARK_UNDELIVERABLE:
        _mark_undeliverable(event, user)
        return
    change = apply_tags(user, reaction.tag) if reaction.kind == Kind.APPLY_TAG else remove_tags(user, reaction.tag)
    if change.applied or change.removed:
        verb = "Applied" if change.applied else "Removed"
        log_activity(
            ActivityLog.Source.CUSTOMERIO,
            f"{verb} tag {reaction.tag} {'to' if change.applied else 'from'} {user.email} on the {_what(event)}.",
            user=user,
            context={"event_id": event.event_id, "reaction": reaction.pk},
        )


def _mark_undeliverable(event: MessageEvent, user: User) -> None:
    # Only an email's fate says whether mail arrives; and a bounce of an address the user no longer has (their email
    # changed since) says nothing about the one they have now.
    if event.channel != "email":
        return
    sent_to = event.recipient if "@" in event.recipient else event.email
    if sent_to and normalize_email(sent_to) != user.email_normalized:
        logger.info("Not marking %s undeliverable: the %s was for another address", user.email, _what(event))
        return
    reason = f"Customer.io: {_what(event)}" + (f" ({event.failure})" if event.failure else "")
    mark_email_undeliverable(user, reason, event.occurred_at)


def _what(event: MessageEvent) -> str:
    return f"{event.channel or 'message'} {event.metric} event {event.event_id}"
