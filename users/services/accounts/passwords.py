"""Generated passwords and their return to Customer.io's Return Password field: one at a time after a webhook's
commit, or a group at a time with /api/v2/batch during an import. A user stays marked as owed a return until
Customer.io accepts one (or they log in, or Return Password is turned off), so a failure is settled later."""

import secrets
from collections import deque
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from cio import get_client
from cio.errors import CustomerIOError
from cio.track_api import identify_operation

from ...models import ActivityLog, User
from ..activity import Activity, log_activities, log_activity
from ..attributes import mapped_values
from ..contacts import find_user
from ..outbox import owe_login_links
from ..password_hashing import HashedAhead, hash_on_thread
from ..welcome import send_due_welcome_email
from .errors import PasswordReturnFailed

GENERATED_PASSWORD_BYTES = 18  # 24 url-safe characters
# How long one processing may take to return a password before another may take over (it died).
PASSWORD_RETURN_CLAIM = timedelta(seconds=60)
# Passwords returned per /api/v2/batch request; and how many may wait for their hash before the import waits.
RETURN_GROUP = 500
MAX_WAITING_RETURNS = 4 * RETURN_GROUP
HASH_WAIT_SECONDS = 30  # between heartbeats while waiting for a hash


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def claim_owed_password_return(user: User) -> bool:
    """Take over a password return owed from an earlier attempt, unless another processing holds it right now."""
    now = timezone.now()
    return bool(
        User.objects.filter(pk=user.pk, password_return_due=True)
        .exclude(password_return_claimed_until__gt=now)
        .update(password_return_claimed_until=now + PASSWORD_RETURN_CLAIM)
    )


def password_returns_owed() -> int:
    """Users whose generated password Customer.io has not accepted yet (the overview and /metrics show it)."""
    return User.objects.filter(password_return_due=True).count()


def settle_password_returns(users: list[User]) -> None:
    """Nothing is owed to Customer.io for these users any more (returned, or no longer to be returned)."""
    User.objects.filter(pk__in=[user.pk for user in users]).update(
        password_return_due=False, password_return_claimed_until=None
    )
    for user in users:
        user.password_return_due = False
        user.password_return_claimed_until = None


def logged_in_meanwhile_message(user: User) -> str:
    return f"{user.email} has logged in since; their password was not replaced or returned"


def password_return_failed_message(field_name: str, reason: str) -> str:
    return f"Could not return the generated password to Customer.io field {field_name}: {reason}"


def returned_attributes(user: User, field_name: str, password: str) -> dict:
    """What a password return writes to the person, as WP Fusion's Return Password does: the password, and the
    account it opens (the username, the site's user id, and when it was registered as a Unix timestamp, Customer.io's
    date convention) so the journey's email can name the username and a segment can use the date."""
    return {
        "user_login": user.get_username(),
        "user_id": user.pk,
        "user_registered": int(user.date_joined.timestamp()),
        field_name: password,  # last: a Return Password field named like one of the above still gets the password
    }


def return_password(user: User, rules, password: str | None, *, source, deadline: float | None) -> None:
    """Return the user's generated password after the commit that made it (`password`), or — owed from an earlier
    attempt (`password` None) — a fresh one. Raises PasswordReturnFailed when Customer.io does not take it."""
    field_name = rules.return_field
    if not rules.returns_passwords:
        settle_password_returns([user])
        return
    if password is None:
        # Owed from an earlier attempt: claim it, then (unless they have logged in meanwhile) set a fresh one.
        if not claim_owed_password_return(user):
            user.refresh_from_db(fields=["password_return_due"])
            return  # settled already, or another processing is returning it right now
        user.refresh_from_db(fields=["last_login", "password"])
        if user.last_login is not None:
            settle_password_returns([user])
            log_activity(source, logged_in_meanwhile_message(user), level=ActivityLog.Level.NOTICE, user=user)
            return
        password = generate_password()
        user.set_password(password)
        user.password_return_due = True  # still owed until Customer.io accepts this one
        with transaction.atomic():
            user.save(update_fields=["password", "password_return_due"])
            # A login link already sent was signed over the old password and is dead now: a fresh one is owed.
            owe_login_links([user], created=True)
    try:
        # By cio_id when known: Customer.io answers 200 to an update for an email nobody has (say, after an email
        # change), and the password would be "returned" to no one.
        identifier = f"cio_{user.cio_id}" if user.cio_id else user.email
        get_client().identify(identifier, returned_attributes(user, field_name, password), deadline=deadline)
    except CustomerIOError as exc:
        User.objects.filter(pk=user.pk).update(password_return_claimed_until=None)
        log_activity(
            source,
            password_return_failed_message(field_name, str(exc)),
            level=ActivityLog.Level.ERROR,
            user=user,
        )
        raise PasswordReturnFailed(f"Customer.io did not accept the returned password ({type(exc).__name__})") from exc
    settle_password_returns([user])
    log_activity(source, f"Returned generated password to Customer.io field {field_name}", user=user)


@sensitive_variables("sending", "operations")  # plaintext passwords: never in an error report
def return_passwords_in_batch(
    client,
    rules,
    sending: list[tuple[User, str]],
    *,
    source,
    deadline: float | None = None,
    delivery_ids: list[int | None] | None = None,
    refuse_all_on_error: bool = False,
) -> dict[int, str]:
    """Return these users' passwords (already theirs, committed) with /api/v2/batch, then settle what Customer.io
    answered: those it took owe nothing any more and get a welcome email still due (once the password is final);
    those it refused stay owed, their claim let go so that a later attempt settles them with a fresh password. Each
    user gets the activity line one by one writes (naming `delivery_ids[index]` when given). Returns the refusals'
    reasons by index in `sending`. `refuse_all_on_error`: a call that fails as a whole (NotConfigured,
    Unauthorized) counts as refusing every password instead of raising."""
    if not sending:
        return {}
    field_name = rules.return_field
    # By cio_id when known, as one by one: an update for an email nobody has would be "accepted" for no one.
    operations = [
        identify_operation(
            {"cio_id": user.cio_id} if user.cio_id else {"email": user.email},
            returned_attributes(user, field_name, password),
        )
        for user, password in sending
    ]
    try:
        outcome = client.batch(operations, deadline=deadline)
        refused = {failure.index: failure.reason for failure in outcome.failures}
    except CustomerIOError as exc:
        if not refuse_all_on_error:
            raise
        refused = {index: str(exc) for index in range(len(sending))}
    returned = [user for index, (user, _) in enumerate(sending) if index not in refused]
    settle_password_returns(returned)
    User.objects.filter(pk__in=[sending[index][0].pk for index in refused]).update(password_return_claimed_until=None)
    activities = []
    for index, (user, _) in enumerate(sending):
        delivery_id = delivery_ids[index] if delivery_ids else None
        if index in refused:
            message = password_return_failed_message(field_name, refused[index])
            activities.append(Activity(message, level=ActivityLog.Level.ERROR, user=user, delivery_id=delivery_id))
        else:
            message = f"Returned generated password to Customer.io field {field_name}"
            activities.append(Activity(message, user=user, delivery_id=delivery_id))
    log_activities(source, activities)
    for user in returned:
        if user.welcome_email_due:
            send_due_welcome_email(user, source)
    return refused


# Hashing ahead (an account action's request: users.services.accounts.requests.ActionRequest) -----------------------


def hash_generated_password_ahead(request, rules) -> None:
    """Start hashing a generated password now, on another thread, when the user probably does not exist yet: the
    hash is then ready by the time Customer.io has answered, and no lock or transaction waits for it."""
    if request.hashed_ahead or not rules.returns_passwords:
        return
    if request.contact.kind != "id" and find_user(request.contact) is not None:
        return
    request.hashed_ahead.append(hash_on_thread(generate_password(), generated=True))


def finish_hashing_ahead(request, rules) -> None:
    """On SQLite the transaction holds the site's one write lock from its start: every hash the account may need is
    finished before it begins — the generated one, and a password mapped from attributes already read."""
    mapped = mapped_password(request.person, rules) if request.person is not None else None
    if mapped and hashed_ahead(request, mapped) is None:
        request.hashed_ahead.append(hash_on_thread(mapped))
    for ahead in request.hashed_ahead:
        ahead.encoded()


def mapped_password(person: dict, rules) -> str | None:
    """The password a new user would get from the person's mapped attributes, if any."""
    return mapped_values(person.get("attributes") or {}, rules.mappings).get("password") or None


def hashed_ahead(request, password: str) -> HashedAhead | None:
    return next((ahead for ahead in request.hashed_ahead if ahead.password == password), None)


class BatchPasswordReturns:
    """An import's generated passwords owed to Customer.io: each is hashed on the pool's cores as soon as its user
    is queued, then, a group at a time, written to the user and returned with one /api/v2/batch request.
    Customer.io's refusals (207) leave those users owing a return, for the next run or webhook to settle.

    `pool` hashes (users.services.password_hashing.PasswordHashPool); `on_failed(n)` counts refusals;
    `heartbeat()` is called while waiting for hashes."""

    def __init__(self, client, rules, pool, *, source, on_failed, heartbeat):
        self.client = client
        self.rules = rules
        self.pool = pool
        self.source = source
        self.on_failed = on_failed
        self.heartbeat = heartbeat
        self.waiting: deque = deque()  # (user, password, future hash), in the order queued
        # The users waiting, and those Customer.io refused in this run (the next run or a webhook retries them, not
        # this one). The ones settled are forgotten: an import of a million would otherwise remember every one.
        self.queued: set[int] = set()

    def waiting_count(self) -> int:
        return len(self.waiting)

    def queue(self, owed: list[tuple[User, str]]) -> None:
        """Users owed a return, each with the password to give them."""
        if not self.rules.returns_passwords:
            # Return Password was turned off since these users were marked: nothing is owed any more.
            settle_password_returns([user for user, _ in owed])
            return
        for user, password in owed:
            if user.pk not in self.queued:
                self.queued.add(user.pk)
                self.waiting.append((user, password, self.pool.submit(password)))

    def flush(self, *, everything: bool = False, progress=None) -> None:
        """Return the groups whose hashes are ready; with `everything`, wait for and return all of them. A long
        queue is worked down too, so that users do not wait long for their password."""
        while self.waiting:
            group_size = min(RETURN_GROUP, len(self.waiting))
            head_ready = all(self.waiting[n][2].done() for n in range(group_size))
            full_and_ready = group_size == RETURN_GROUP and head_ready
            if not (everything or full_and_ready or len(self.waiting) > MAX_WAITING_RETURNS):
                return
            group = [self.waiting.popleft() for _ in range(group_size)]
            self._return(group)
            if progress is not None:
                progress.advance(len(group))

    def _return(self, group) -> None:
        hashed = []
        for user, password, future in group:
            while True:
                try:
                    hashed.append((user, password, future.result(timeout=HASH_WAIT_SECONDS)))
                    break
                except TimeoutError:
                    self.heartbeat()
        with transaction.atomic():
            claimed = [
                (user, password, encoded) for user, password, encoded in hashed if claim_owed_password_return(user)
            ]
            last_logins = dict(
                User.objects.filter(pk__in=[user.pk for user, _, _ in claimed]).values_list("pk", "last_login")
            )
            logged_in = [user for user, _, _ in claimed if last_logins.get(user.pk)]
            settle_password_returns(logged_in)
            sending = [(user, password, encoded) for user, password, encoded in claimed if not last_logins.get(user.pk)]
            for user, _, encoded in sending:
                user.password = encoded
            User.objects.bulk_update([user for user, _, _ in sending], ["password"], batch_size=RETURN_GROUP)
        notice = ActivityLog.Level.NOTICE
        log_activities(self.source, [Activity(logged_in_meanwhile_message(u), level=notice, user=u) for u in logged_in])
        owed = [(user, password) for user, password, _ in sending]
        refused = return_passwords_in_batch(self.client, self.rules, owed, source=self.source)
        self.on_failed(len(refused))
        self.queued.difference_update(user.pk for user, _, _ in group)
        self.queued.update(owed[index][0].pk for index in refused)
