import io
import logging
import re
from dataclasses import dataclass

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from settings_app import freshness
from settings_app.models import FieldMapping, WebhookSettings
from users.emails import normalize_email
from users.models import Role, Tag, User

SEGMENTS = [
    {"id": 1, "name": "Everyone", "type": "dynamic"},
    {"id": 2, "name": "Even", "type": "manual"},
    {"id": 3, "name": "Thirds", "type": "dynamic"},
    {"id": 4, "name": "Fifths", "type": "manual"},
    {"id": 5, "name": "Sevenths", "type": "dynamic"},
]


def segments_of(n: int) -> list[int]:
    """Person n's segments: everyone is in 1; 2, 3, 4, 5 hold every 2nd, 3rd, 5th, 7th person."""
    return [1] + [segment for segment, every in ((2, 2), (3, 3), (4, 5), (5, 7)) if n % every == 0]


def person(n: int, **attributes) -> dict:
    return {
        "email": f"person{n}@example.com",
        "cio_id": cio_id(n),
        "attributes": {"first_name": f"First{n}", "last_name": f"Last{n}", "plan": "gold", **attributes},
        "segments": segments_of(n),
    }


def cio_id(n: int) -> str:
    return f"cio{n:05d}"


def population(count: int, segments=SEGMENTS) -> dict:
    return {"segments": segments, "customers": [person(n) for n in range(count)]}


def make_users(numbers, *, linked=True, named=False, **fields) -> list[User]:
    """Site users for people `numbers`, written in bulk. `linked`: they know their Customer.io id; `named`: their
    first name is First<n>."""
    role = Role.get_default()
    users = [
        User(
            username=f"person{n}@example.com",
            email=f"person{n}@example.com",
            email_normalized=normalize_email(f"person{n}@example.com"),
            cio_id=cio_id(n) if linked else None,
            first_name=f"First{n}" if named else "",
            role=role,
            password="!unusable",
            **fields,
        )
        for n in numbers
    ]
    return User.objects.bulk_create(users)


def map_plan_to_meta():
    FieldMapping.objects.get_or_create(cio_attribute="plan", user_field="meta.plan")


def set_site_settings(**values):
    WebhookSettings.load()
    WebhookSettings.objects.update(**values)
    freshness.changed("webhook_settings")  # update() sends no signal


def tags_of(user: User) -> list[int]:
    return sorted(user.tags.values_list("segment_id", flat=True))


def app_calls(emulator, path_prefix="/v1/") -> list[dict]:
    return emulator.requests(path_prefix)


def track_calls(emulator) -> list[dict]:
    return emulator.requests("/api/")


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def error(self) -> str:
        """The error message: the last line on stderr (progress lines come before it)."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def run(*args) -> Outcome:
    """A backfill command as an operator runs it; a CommandError becomes its exit code and message."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        return Outcome(exc.returncode, out.getvalue(), err.getvalue() + f"CommandError: {exc}\n")
    return Outcome(0, out.getvalue(), err.getvalue())


# Words that say something was done; a dry run says each "would be …" (or "nothing written").
DONE_WORDS = re.compile(
    r"(?<!would be )(?<!nothing )\b(created|updated|unchanged|skipped|deleted|kept|written|imported|pushed|pulled"
    r"|changed|returned|sent)\b"
)


@pytest.fixture
def activity_lines(caplog):
    """The activity lines logged to the console (routine ones are logged at DEBUG)."""
    caplog.set_level(logging.DEBUG, logger="users.activity")
    return lambda: [record.getMessage() for record in caplog.records if record.name == "users.activity"]


def assert_reads_as_a_dry_run(outcome: Outcome) -> None:
    """Every line a dry run prints, summary and progress alike, says what would happen, not what did."""
    assert "Dry run (nothing written): " in outcome.out
    claims = [line for line in outcome.text.splitlines() if DONE_WORDS.search(line)]
    assert claims == []


@pytest.fixture
def emulator(cio_emulator, settings):
    """The emulator and our client without their rate limits: these tests move thousands of people (one test
    checks the limiter on its own)."""
    cio_emulator.configure(rate_limit=0)
    settings.CUSTOMERIO_APP_API_RATE = 0
    settings.CUSTOMERIO_MAX_RETRIES = 1
    return cio_emulator


# The people in `segment`, the segment the cio_import_users tests import.
MEMBERS = 2000


@pytest.fixture
def segment(emulator):
    """2,000 people in segment 1 (and some of them in segments 2-5)."""
    emulator.reset(population(MEMBERS))
    map_plan_to_meta()
    return 1


@pytest.fixture
def tags(db):
    """Tag rows for SEGMENTS, as cio_sync_segments leaves them."""
    return {segment["id"]: Tag.objects.create(segment_id=segment["id"], name=segment["name"]) for segment in SEGMENTS}


class SignalLog:
    """Records the tag signals: [(signal name, user email, [segment ids])]."""

    def __init__(self):
        from users.signals import tags_applied, tags_modified, tags_removed, user_imported

        self.events = []
        self.connections = [
            (tags_applied, self._receiver("applied")),
            (tags_removed, self._receiver("removed")),
            (tags_modified, self._receiver("modified")),
        ]
        self.imported = []
        self.connections.append((user_imported, lambda sender, user, **kw: self.imported.append(user.email)))
        for signal, receiver in self.connections:
            signal.connect(receiver)

    def _receiver(self, name):
        def receive(sender, user, tags, **kwargs):
            self.events.append((name, user.email, sorted(tag.segment_id for tag in tags)))

        return receive

    def users(self) -> set[str]:
        return {email for _, email, _ in self.events}

    def close(self):
        for signal, receiver in self.connections:
            signal.disconnect(receiver)


@pytest.fixture
def signal_log():
    log = SignalLog()
    yield log
    log.close()
