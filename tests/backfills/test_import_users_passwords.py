"""cio_import_users and passwords: a mapped user_pass and user_login serve new users only, Return Password sends the
generated ones back by /api/v2/batch (a 207 leaves those users owing a return, settled by the next run, and no
password is printed, stored or logged), and users left without a usable password are told in one line a run."""

import json
import logging

import pytest
from django.core import mail

from settings_app.models import FieldMapping
from users.models import ActivityLog, ImportRun, User

from .conftest import SEGMENTS, cio_id, make_users, person, population, run, set_site_settings, track_calls

pytestmark = pytest.mark.django_db


def test_a_mapped_user_login_and_user_pass_are_used_for_new_users_only(emulator):
    emulator.reset(population(30))
    FieldMapping.objects.filter(user_field__in=["password", "username"]).update(active=True)
    emulator.load(
        {
            "customers": [
                {
                    "email": f"person{n}@example.com",
                    "attributes": {"user_login": f"login{n}", "user_pass": f"Pass-{n}-word"},
                }
                for n in range(30)
            ]
        }
    )
    [existing] = make_users([3])

    outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    assert "29 created" in outcome.out
    created = User.objects.get(email="person7@example.com")
    assert created.username == "login7"
    assert created.check_password("Pass-7-word")  # hashed in the worker processes
    existing.refresh_from_db()
    assert (existing.username, existing.password) == ("person3@example.com", "!unusable")
    assert track_calls(emulator) == []  # only generated passwords are returned


def test_each_returned_password_carries_the_account_it_opens(emulator):
    """WP Fusion's Return Password sends user_login, user_id and user_registered with the password: so does the
    import's /api/v2/batch return, in the same entry."""
    emulator.reset({"segments": SEGMENTS, "customers": [person(n) for n in range(3)]})
    set_site_settings(return_password=True, return_password_field="site_password")

    outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    [batch] = track_calls(emulator)
    assert batch["path"] == "/api/v2/batch" and len(batch["body"]["batch"]) == 3
    for operation in batch["body"]["batch"]:
        user = User.objects.get(cio_id=operation["identifiers"]["cio_id"])
        attributes = operation["attributes"]
        assert set(attributes) == {"site_password", "user_login", "user_id", "user_registered", "_update"}
        assert (attributes["user_login"], attributes["user_id"]) == (user.username, user.pk)
        assert attributes["user_registered"] == int(user.date_joined.timestamp())
        stored = emulator.customer(f"cio_{user.cio_id}")["attributes"]
        assert user.check_password(stored["site_password"]) and stored["user_id"] == user.pk


def everything_printed_stored_and_logged(outcome, caplog) -> str:
    logs = [json.dumps(row, default=str) for row in ActivityLog.objects.values()]
    runs = [json.dumps(row, default=str) for row in ImportRun.objects.values()]
    return "\n".join([outcome.text, caplog.text, *logs, *runs, *(m.body for m in mail.outbox)])


@pytest.mark.slow
def test_return_password_goes_by_batch_and_a_207_leaves_those_users_owing(emulator, caplog):
    """Return Password on with a field: generated passwords are hashed on the machine's cores and returned with
    /api/v2/batch. Customer.io refuses three of them (207): those users owe a return, which the next run settles."""
    caplog.set_level(logging.DEBUG)
    emulator.reset(
        {
            "segments": SEGMENTS,
            "customers": [{"email": f"p{n}@example.com", "cio_id": cio_id(n), "segments": [1]} for n in range(300)],
        }
    )
    set_site_settings(return_password=True, return_password_field="site_password")
    refused = [cio_id(7), cio_id(150), cio_id(299)]
    emulator.set_faults(reject_identifiers=refused)

    outcome = run("cio_import_users", "--segment", "1", "--send-notification")

    assert outcome.code == 1
    assert "300 created, 0 updated, 0 unchanged, 0 skipped, 3 failed" in outcome.out
    assert outcome.error.endswith("CommandError: 3 failed; Users → Activity logs in the admin says why.")
    [batch] = track_calls(emulator)
    assert batch["path"] == "/api/v2/batch" and len(batch["body"]["batch"]) == 300
    returned = {op["identifiers"]["cio_id"]: op["attributes"]["site_password"] for op in batch["body"]["batch"]}
    for user in User.objects.all():
        if user.cio_id in refused:
            assert user.password_return_due  # its password is one nobody knows, replaced by the next return
        else:
            assert not user.password_return_due
            assert user.check_password(emulator.customer(f"cio_{user.cio_id}")["attributes"]["site_password"])
    assert (
        ActivityLog.objects.filter(
            level="error",
            message__startswith="Could not return the generated password to Customer.io field site_password",
        ).count()
        == 3
    )
    # The welcome email waits until the password is final.
    assert len(mail.outbox) == 297
    seen = everything_printed_stored_and_logged(outcome, caplog)
    assert all(password not in seen for password in returned.values())

    emulator.set_faults()
    emulator.clear_requests()
    again = run("cio_import_users", "--segment", "1")

    assert again.code == 0, again.text
    assert "0 created, 0 updated, 300 unchanged, 0 skipped, 0 failed" in again.out
    [retry] = track_calls(emulator)
    assert sorted(op["identifiers"]["cio_id"] for op in retry["body"]["batch"]) == refused
    for cio in refused:
        user = User.objects.get(cio_id=cio)
        assert not user.password_return_due
        assert user.check_password(emulator.customer(f"cio_{cio}")["attributes"]["site_password"])
    assert len(mail.outbox) == 300
    seen = everything_printed_stored_and_logged(again, caplog)
    assert all(op["attributes"]["site_password"] not in seen for op in retry["body"]["batch"])


def test_users_imported_without_a_password_are_told_in_one_line_per_run(emulator):
    """Return Password on with no field (the default): nobody could know a generated password. One summary line,
    not one notice per user; a webhook-created user still gets their own line (test_delivery_activity)."""
    emulator.reset(population(150))

    outcome = run("cio_import_users", "--segment", "1")

    assert outcome.code == 0, outcome.text
    assert not User.objects.filter(password__startswith="argon2").exists()
    notices = list(ActivityLog.objects.filter(message__contains="no usable password").values_list("message", "user"))
    assert notices == [
        (
            "150 new user(s) have no usable password (Return Password is on but no Customer.io field is chosen): "
            "they can log in only after setting one, 150 through a password reset (no welcome email is sent).",
            None,
        )
    ]
