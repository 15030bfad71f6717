"""The webhook actions as account rules: update_tags, update and add.

Each action runs under the contact's lock in one transaction (so concurrent deliveries for one person run one
after another and a failure leaves the user as it was); work that must follow a commit — returning a generated
password to Customer.io, the welcome email, signals — happens after it.

Customer.io gives a synchronous webhook 4 seconds, so an action reads the person's attributes and segments at once
(one round trip, not two), hashes a generated password on another thread meanwhile (never inside the lock or the
transaction), and a delivery that waited behind another for the same person may answer with its result
(recent_reads).
"""

import functools

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cio import get_client
from cio.parallel import call_together

from ...models import ActivityLog, User
from ...signals import user_imported
from ..activity import log_activity
from ..contacts import find_user, find_user_for_person, is_protected, lock_contact, settle_identity
from ..outbox import owe_login_links, told_by_customerio
from ..tags import TagChange, replace_tags, send_on_commit
from ..welcome import send_due_welcome_email
from .errors import ContactHasNoEmail
from .passwords import (
    PASSWORD_RETURN_CLAIM,
    finish_hashing_ahead,
    hash_generated_password_ahead,
    hashed_ahead,
    return_password,
)
from .people import apply_person, meta_log_context, meta_log_message, person_email, plan_new_account
from .recent_reads import Reads, counted_as_received, one_reader_at_a_time, recent_result, remember
from .requests import ActionRequest, ActionResult, ResultStatus
from .rules import AccountRules
from .usernames import save_new_user

# The actions ------------------------------------------------------------------------------------------------------


def _in_turn_on_sqlite(action):
    """On SQLite, a synchronous delivery waits for the site's other synchronous processing of the same contact, in
    every process, before it reads (see recent_reads); on PostgreSQL the contact's lock, taken before the reads, does
    that."""

    @functools.wraps(action)
    def run(request: ActionRequest) -> ActionResult:
        if connection.vendor != "sqlite" or not request.may_reuse:
            return action(request)
        with one_reader_at_a_time(request.contact.lock_key, request.deadline):
            return action(request)

    return run


@told_by_customerio
@_in_turn_on_sqlite
def update_tags(request: ActionRequest) -> ActionResult:
    """Replace the user's tags with their Customer.io segments (one App API call)."""
    reads = Reads(request)
    if reused := _reuse_before_reading("update_tags", request):
        return _finished(reused, request)
    _read_before_writing(request, reads, creates=False, needs_person=False)
    with transaction.atomic():
        lock_contact(request.contact)
        result = _reuse("update_tags", request) or _update_tags_locked(request, reads)
    return _finished(result, request)


def _update_tags_locked(request: ActionRequest, reads: Reads) -> ActionResult:
    user, person = _find_existing(request, reads)
    if user is None or is_protected(user):
        return _skip("update_tags", request, user, reads)
    settle_identity(user, request.contact, person, source=request.source)
    change = _load_tags(user, request, reads)
    result = ActionResult("update_tags", user=user, tags=change.names)
    remember(request, reads, result.as_dict(), user)
    return result


@told_by_customerio
@_in_turn_on_sqlite
def update(request: ActionRequest) -> ActionResult:
    """Pull the person's attributes onto the user through the field mappings, then their tags (two calls, made
    at once)."""
    reads = Reads(request)
    if reused := _reuse_before_reading("update", request):
        return _finished(reused, request)
    _read_before_writing(request, reads, creates=False, needs_person=True)
    with transaction.atomic():
        lock_contact(request.contact)
        result = _reuse("update", request) or _update_locked(request, reads)
    return _finished(result, request)


def _update_locked(request: ActionRequest, reads: Reads) -> ActionResult:
    user, person = _find_existing(request, reads)
    if user is None or is_protected(user):
        return _skip("update", request, user, reads)
    _read_person_and_segments(request, reads)
    person = person or _fetch_person(request, reads)
    updated_fields = settle_identity(user, request.contact, person, source=request.source)
    updated_fields += _update_existing(user, person, request, AccountRules.load())
    change = _load_tags(user, request, reads)
    result = ActionResult("update", user=user, tags=change.names, updated_fields=updated_fields)
    remember(request, reads, result.as_dict(), user)
    return result


@told_by_customerio
@_in_turn_on_sqlite
def add(request: ActionRequest) -> ActionResult:
    """Create the user from their Customer.io attributes, or update them when they already exist (never a
    duplicate). A generated password is returned to Customer.io when Return Password is set up."""
    rules = AccountRules.load()
    reads = Reads(request)
    if reused := _reuse_before_reading("add", request):
        return _finished(reused, request, rules)
    hash_generated_password_ahead(request, rules)
    _read_before_writing(request, reads, creates=True, needs_person=True)
    if connection.vendor == "sqlite":
        finish_hashing_ahead(request, rules)
    with transaction.atomic():
        lock_contact(request.contact)
        reused = _reuse("add", request)
        result, generated_password = (reused, None) if reused else _add_locked(request, reads, rules)
    return _finished(result, request, rules, generated_password)


def _add_locked(request: ActionRequest, reads: Reads, rules: AccountRules) -> tuple[ActionResult, str | None]:
    """`add` under the contact's lock: the result, and the generated password to return after the commit."""
    generated_password = None
    user = find_user(request.contact)
    if user is not None and is_protected(user):
        return _skip("add", request, user, reads), None
    _read_person_and_segments(request, reads)
    person = _fetch_person(request, reads)
    user = user or find_user_for_person(person)
    if user is not None and is_protected(user):
        return _skip("add", request, user, reads), None
    created = False
    updated_fields = [] if user is None else settle_identity(user, request.contact, person, source=request.source)
    if user is None:
        try:
            with transaction.atomic():
                user, generated_password, updated_fields = _create_user(person, request, rules)
            created = True
        except IntegrityError:
            # Someone else created them between our lookup and our insert (a different identifier's lock):
            # carry on as for an existing user — never two users, never a 500.
            user = find_user_for_person(person) or find_user(request.contact)
            if user is None:
                raise
            if is_protected(user):
                return _skip("add", request, user, reads), None
            updated_fields = settle_identity(user, request.contact, person, source=request.source)
    if not created:
        updated_fields += _update_existing(user, person, request, rules)
    change = _load_tags(user, request, reads)
    if created:
        send_on_commit(user_imported, user=user, delivery=request.delivery)
    owe_login_links([user], created=created)
    result = ActionResult("add", user=user, created=created, tags=change.names, updated_fields=updated_fields)
    # A later delivery reusing this answer did not create the user itself.
    remember(request, reads, {**result.as_dict(), "created": False}, user)
    return result, generated_password


def _finished(result: ActionResult, request: ActionRequest, rules=None, generated_password=None) -> ActionResult:
    """After the commit: what is still owed for a user the action (or the processing whose result it reused)
    changed."""
    if result.status == ResultStatus.OK and result.user is not None:
        _finish_account(result.user, request, rules, generated_password)
    return result


# Finding people ----------------------------------------------------------------------------------------------------


def _read_before_writing(request: ActionRequest, reads: Reads, *, creates: bool, needs_person: bool) -> None:
    """On SQLite, make the Customer.io reads before the transaction. SQLite has one writer at a time and an
    IMMEDIATE transaction holds the write lock from its start, so reads made inside it would stall every other
    write on the site (webhook accepts included) for as long as Customer.io takes. Nothing is lost by reading first:
    SQLite serializes the writes, and a concurrent creation still meets the unique email constraint. On PostgreSQL
    the per-contact row lock blocks only that contact, so the reads stay under it."""
    if connection.vendor != "sqlite" or request.contact.kind != "email":
        return
    user = find_user(request.contact)
    if (user is None and not creates) or (user is not None and is_protected(user)):
        return  # the transaction will skip this contact without calling anyone
    _read_person_and_segments(request, reads, person=needs_person)


def _read_person_and_segments(request: ActionRequest, reads: Reads, *, person: bool = True) -> None:
    """Read what the request still lacks of an email contact's attributes (`person`) and segments, both at once.
    Other contacts are read one call after the other (who they are decides whose segments to read)."""
    if request.contact.kind != "email":
        return
    email, deadline = request.contact.value, request.deadline
    wanted = {}
    if person and request.person is None:
        wanted["person"] = lambda: get_client().get_attributes(email, "email", deadline=deadline)
    if request.segments is None:
        wanted["segments"] = lambda: get_client().get_segments(email, "email", deadline=deadline)
    if not wanted:
        return
    reads.reading()
    for name, value in zip(wanted, call_together(*wanted.values()), strict=True):
        setattr(request, name, value)


def _fetch_person(request: ActionRequest, reads: Reads) -> dict:
    if request.person is not None:
        return request.person
    reads.reading()
    return get_client().get_attributes(request.contact.value, request.contact.kind, deadline=request.deadline)


def _find_existing(request: ActionRequest, reads: Reads) -> tuple[User | None, dict | None]:
    """The local user. A contact given by email or known cio_id costs no call; otherwise Customer.io tells us who
    it is (and that answer is reused as the person's attributes)."""
    user = find_user(request.contact)
    if user is not None or request.contact.kind == "email":
        return user, request.person
    person = _fetch_person(request, reads)
    return find_user_for_person(person), person


def _skip(action: str, request: ActionRequest, user: User | None, reads: Reads) -> ActionResult:
    if user is None:
        log_activity(
            request.source,
            f"No matching user found for {request.contact} ({action})",
            level=ActivityLog.Level.NOTICE,
            context={"action": action, "contact": str(request.contact)},
        )
        result = ActionResult(action, status=ResultStatus.SKIPPED, reason="no_matching_user")
    else:
        log_activity(
            request.source,
            f"Refused to change staff account {user.get_username()} from a webhook ({action})",
            level=ActivityLog.Level.WARNING,
            user=user,
        )
        result = ActionResult(action, status=ResultStatus.SKIPPED, reason="protected_account", user=user)
    remember(request, reads, result.as_dict(), user)
    return result


def _reuse_before_reading(action: str, request: ActionRequest) -> ActionResult | None:
    """On SQLite the reads happen outside the transaction (see _read_before_writing): a delivery that starts after
    another processing of the contact committed may reuse its result before reading anything."""
    return _reuse(action, request) if connection.vendor == "sqlite" else None


def _reuse(action: str, request: ActionRequest) -> ActionResult | None:
    """The answer of a processing of this contact that read Customer.io after this delivery (or the first copy of
    it that was still being answered when it arrived) was received, for at least as much (see recent_reads)."""
    found = recent_result(request, action)
    if found is None:
        return None
    answer, user = found
    received = (
        "this delivery" if counted_as_received(request) == request.received_at else "the first copy of this delivery"
    )
    log_activity(
        request.source,
        f"Answered {action} for {request.contact} with the result of a processing that read Customer.io after "
        f"{received} was received",
        user=user,
        context={"action": action, "reused": True},
    )
    if answer.get("status") == "skipped":
        return ActionResult(
            action, status=ResultStatus.SKIPPED, reason=answer.get("reason", ""), user=user, reused=True
        )
    return ActionResult(action, user=user, tags=list(answer.get("tags") or []), reused=True)


# Changing people ---------------------------------------------------------------------------------------------------


def _load_tags(user: User, request: ActionRequest, reads: Reads) -> TagChange:
    identifier, id_type = (user.cio_id, "cio_id") if user.cio_id else (user.email, "email")
    if request.contact.kind == "email":
        identifier, id_type = request.contact.value, "email"
    segments = request.segments
    if segments is None:
        reads.reading()
        segments = get_client().get_segments(identifier, id_type, deadline=request.deadline)
    change = replace_tags(user, segments)
    log_activity(
        request.source,
        f"Loaded tags for {user.email}: {', '.join(change.names) or '(none)'}",
        user=user,
        context={
            "applied": [str(tag) for tag in change.applied],
            "removed": [str(tag) for tag in change.removed],
        },
    )
    return change


def _update_existing(user: User, person: dict, request: ActionRequest, rules: AccountRules) -> list[str]:
    change = apply_person(user, person, rules, requested_role=request.role)
    if change.dirty:
        user.save()
    attributes = person.get("attributes") or {}
    loaded = meta_log_context(attributes, rules)
    log_activity(request.source, meta_log_message(loaded), user=user, context=loaded)
    role_line = change.role_activity(user)
    if role_line is not None:
        log_activity(request.source, role_line.message, user=user, context=role_line.context)
    for notice in change.notices:
        log_activity(request.source, notice, level=ActivityLog.Level.NOTICE, user=user)
    return change.fields


def _create_user(person: dict, request: ActionRequest, rules: AccountRules):
    known_email = request.contact.value if request.contact.kind == "email" else ""
    email = person_email(person, known_email)
    if not email:
        raise ContactHasNoEmail(f"Customer.io has no email address for {request.contact}")
    generated = next((ahead.password for ahead in request.hashed_ahead if ahead.generated), None)
    account = plan_new_account(
        person,
        email,
        rules,
        requested_role=request.role,
        send_notification=request.send_notification,
        generated_password=generated,
    )
    user = account.user
    if account.password is not None:
        ahead = hashed_ahead(request, account.password)
        if ahead is not None:
            user.password = ahead.encoded()
        else:
            user.set_password(account.password)
    if account.generated:
        user.password_return_due = True
        # This processing returns it right after the commit; nobody else may start another return meanwhile.
        user.password_return_claimed_until = timezone.now() + PASSWORD_RETURN_CLAIM
    save_new_user(user, account.username_base)
    for line in account.activities():
        log_activity(request.source, line.message, level=line.level, user=user, context=line.context)
    loaded = meta_log_context(person.get("attributes") or {}, rules)
    log_activity(request.source, meta_log_message(loaded), user=user, context=loaded)
    return user, account.password if account.generated else None, account.filled_fields


# After the commit --------------------------------------------------------------------------------------------------


def _finish_account(user, request, rules: AccountRules | None = None, generated_password=None) -> None:
    """Return a generated password still owed to Customer.io, then send a welcome email still owed (once the
    password is final, so its set-password link stays valid)."""
    if not (user.password_return_due or user.welcome_email_due):
        return
    rules = rules or AccountRules.load()
    if user.password_return_due:
        return_password(user, rules, generated_password, source=request.source, deadline=request.deadline)
    if user.welcome_email_due and not user.password_return_due:
        send_due_welcome_email(user, request.source)
