"""One step of `cio_import_users`: up to 100 members of the segment become users under the `add` webhook's account
rules — new ones created in bulk, known ones updated, staff accounts left alone — with their activity lines and the
run's new position, in one transaction.
"""

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from ...emails import normalize_email
from ...models import ActivityLog, ImportRun, User
from ...signals import user_imported, users_created_in_bulk
from ..accounts import (
    AccountRules,
    NewAccount,
    apply_person,
    new_username_base,
    person_email,
    pick_usernames,
    plan_new_account,
)
from ..activity import Activity, log_activities
from ..contacts import Contact, is_protected, lock_contacts
from ..password_hashing import PasswordHashPool
from ..roles import add_role_groups
from ..tags import send_on_commit
from .common import BACKFILL, BackfillResult, match_people, person_key
from .id_sets import IdSet
from .import_runs import RunRecord

# Tries at creating one user whose insert keeps meeting a user someone else just created.
CREATE_ATTEMPTS = 3


@dataclass
class WrittenStep:
    created: list[NewAccount] = field(default_factory=list)
    # Users owed their welcome email now (owed no password, or owed it from an earlier attempt).
    welcome: list[User] = field(default_factory=list)
    # New users with a generated password, to be returned to Customer.io after the commit.
    owing: list[tuple[User, str]] = field(default_factory=list)


class StepWriter:
    def __init__(
        self, rules: AccountRules, run: ImportRun, record: RunRecord, result: BackfillResult, pool: PasswordHashPool
    ):
        self.rules = rules
        self.run = run
        self.record = record
        self.result = result
        self.dry_run = result.dry_run
        self.pool = pool
        # The users this invocation imported (created or updated); a run stopped at --limit tags only them.
        self.imported_ids = IdSet()

    def hash_mapped_passwords(self, people: list[dict]) -> dict[str, str]:
        """Hashes of the passwords Customer.io holds (a mapped user_pass) for the people who are to become users,
        made on every core before the step's transaction: {password: hash}."""
        field_names = [m.cio_attribute for m in self.rules.mappings if m.user_field == "password"]
        if not field_names or self.dry_run:
            return {}
        existing, _ = match_people(people)
        passwords = sorted(
            {
                str(value)
                for person in people
                if person_key(person) not in existing
                for name in field_names
                if (value := (person.get("attributes") or {}).get(name))
            }
        )
        return dict(zip(passwords, self.pool.hash_all(passwords), strict=True))

    def write(self, members, people, position, members_done: int, mapped_passwords: dict[str, str]) -> WrittenStep:
        """The step's users, activity lines and position (with `members_done`, the run's count once the step is
        written), in one transaction."""
        written = WrittenStep()
        missing = len(members) - len(people)
        with transaction.atomic():
            # The locks the `add` webhook takes: a webhook for one of these people waits for this step, or this
            # step for it, so that both see the other's user.
            lock_contacts([Contact.email(email) for person in people if (email := person_email(person))])
            activities: list[Activity] = []
            existing, taken_cio_ids = match_people(people)
            new_people = []
            for person in people:
                user = existing.get(person_key(person))
                if user is None:
                    email = person_email(person)
                    if email:
                        new_people.append((person, email))
                    else:
                        self.result.skipped += 1
                        activities.append(
                            Activity(
                                f"Not imported: Customer.io has no email address for {person_key(person)}",
                                level=ActivityLog.Level.NOTICE,
                            )
                        )
                elif is_protected(user):
                    self.result.skipped += 1
                    activities.append(
                        Activity(
                            f"Refused to change staff account {user.get_username()} from a backfill (import)",
                            level=ActivityLog.Level.WARNING,
                            user=user,
                        )
                    )
                else:
                    self._update(user, person, taken_cio_ids, activities)
                    if user.welcome_email_due and not user.password_return_due:
                        written.welcome.append(user)  # owed from an earlier attempt
            written.created = self._create(new_people, taken_cio_ids, mapped_passwords, activities)
            for account in written.created:
                user = account.user
                self.imported_ids.add(user.pk)
                activities += account.activities(password_notice=False)
                if account.generated:
                    written.owing.append((user, account.password))
                elif user.welcome_email_due:
                    written.welcome.append(user)
                send_on_commit(user_imported, user=user, delivery=None)
            if written.created:
                send_on_commit(users_created_in_bulk, users=[account.user for account in written.created])
            self.result.created += len(written.created)
            self.result.skipped += missing
            if not self.dry_run:
                log_activities(BACKFILL, activities)
            self.record.save_position(position, members_done=members_done)
            if self.dry_run:
                transaction.set_rollback(True)
        return written

    def _update(self, user: User, person: dict, taken_cio_ids: set[str], activities: list[Activity]) -> None:
        self.imported_ids.add(user.pk)
        change = apply_person(user, person, self.rules, requested_role=self.run.role, taken_cio_ids=taken_cio_ids)
        if change.dirty:
            user.save()
        if change.fields:
            self.result.updated += 1
            activities.append(Activity(f"Updated {user.email} from Customer.io: {', '.join(change.fields)}", user=user))
            if (role_line := change.role_activity(user)) is not None:
                activities.append(role_line)
        else:
            self.result.unchanged += 1
        activities += [Activity(notice, level=ActivityLog.Level.NOTICE, user=user) for notice in change.notices]

    def _create(self, new_people, taken_cio_ids, mapped_passwords, activities) -> list[NewAccount]:
        if not new_people:
            return []
        usernames = pick_usernames([new_username_base(person, email, self.rules) for person, email in new_people])
        accounts = []
        for (person, email), username in zip(new_people, usernames, strict=True):
            account = plan_new_account(
                person,
                email,
                self.rules,
                requested_role=self.run.role,
                send_notification=self.run.send_notification,
                username=username,
                taken_cio_ids=taken_cio_ids,
            )
            user = account.user
            if account.generated:
                # Hashed and returned to Customer.io after the commit (see BatchPasswordReturns). Until then nobody can
                # log in with it; the user is marked as owed a return, which survives a crash.
                user.set_unusable_password()
            elif account.password is not None and not self.dry_run:  # a dry run is rolled back: no hashing
                if account.password in mapped_passwords:
                    user.password = mapped_passwords[account.password]
                else:
                    user.set_password(account.password)  # not foreseen as new: one hash, here
            # bulk_create skips save(), which fills this column.
            user.email_normalized = normalize_email(user.email)
            accounts.append(account)
        try:
            with transaction.atomic():
                User.objects.bulk_create([account.user for account in accounts])
        except IntegrityError:
            # Somebody (a webhook) created one of these people, or took one of the usernames, since we looked.
            return self._create_one_by_one(new_people, accounts, activities)
        add_role_groups([account.user for account in accounts])
        return accounts

    def _create_one_by_one(self, new_people, accounts: list[NewAccount], activities) -> list[NewAccount]:
        created = []
        for (person, _), account in zip(new_people, accounts, strict=True):
            for _attempt in range(CREATE_ATTEMPTS):
                existing = match_people([person])[0].get(person_key(person))
                if existing is not None:
                    if is_protected(existing):
                        self.result.skipped += 1
                    else:
                        self._update(existing, person, set(), activities)
                    break
                try:
                    with transaction.atomic():
                        account.user.save()
                except IntegrityError:
                    # Created meanwhile by someone we do not lock out (the next lookup finds them), or the username
                    # was taken (the next one is free).
                    account.user.username = pick_usernames([account.username_base])[0]
                    continue
                created.append(account)
                break
            else:
                self.result.failed += 1
                activities.append(
                    Activity(f"Could not create user {account.user.email}", level=ActivityLog.Level.ERROR)
                )
        return created
