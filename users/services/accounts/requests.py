"""What an account action is asked to do (ActionRequest) and what it answers (ActionResult): shared by the actions,
the webhooks' processing and the queue."""

import enum
from dataclasses import dataclass, field
from datetime import datetime

from ...models import ActivityLog, User
from ..contacts import Contact
from ..password_hashing import HashedAhead

WEBHOOK = ActivityLog.Source.WEBHOOK


@dataclass
class ActionRequest:
    contact: Contact
    role: str = ""  # the URL's role= parameter
    send_notification: bool = False
    deadline: float | None = None  # time.monotonic() value covering every Customer.io call of this processing
    delivery: object = None  # the WebhookDelivery, passed on to user_imported
    source: str = WEBHOOK
    # The person's attributes when the caller already has them (sent in the webhook body, or fetched for many
    # contacts in one batch call): {"identifiers": {...}, "attributes": {...}}. Saves the attributes call.
    person: dict | None = None
    # The person's segments when already read (see _read_before_writing).
    segments: list[dict] | None = None
    # Coalescing (see recent_reads): when the delivery was received, how much its action does (webhooks.actions
    # strength), whether it may answer with the result of a processing that read Customer.io after that, and the
    # copies of it (recent_reads.Copy) received shortly before it.
    received_at: datetime | None = None
    strength: int = 0
    may_reuse: bool = False
    copies: list = field(default_factory=list)
    # Passwords already being hashed (a generated one when a new user is likely, a mapped one read early): used
    # when the new account gets that password, dropped otherwise. The caller may hash ahead (the queue, on its
    # process pool); else `add` does, on a thread.
    hashed_ahead: list[HashedAhead] = field(default_factory=list)


class ResultStatus(enum.StrEnum):
    OK = "ok"
    SKIPPED = "skipped"  # nobody to change: no such user, or a staff account


@dataclass
class ActionResult:
    action: str
    status: ResultStatus = ResultStatus.OK
    user: User | None = None
    created: bool = False
    tags: list[str] = field(default_factory=list)
    updated_fields: list[str] = field(default_factory=list)
    reason: str = ""
    reused: bool = False  # the result of another delivery's processing (see recent_reads)

    def as_dict(self) -> dict:
        if self.status == ResultStatus.SKIPPED:
            answer = {"status": "skipped", "action": self.action, "reason": self.reason}
        else:
            answer = {
                "status": "ok",
                "action": self.action,
                "user_id": self.user.pk if self.user else None,
                "created": self.created,
                "tags": self.tags,
                "updated_fields": self.updated_fields,
            }
        return {**answer, "reused": True} if self.reused else answer
