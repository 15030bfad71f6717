"""The one normal form of an email address: what makes two spellings one account."""

import pytest

from users.emails import normalize_email


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("ann@bücher.example", "ann@xn--bcher-kva.example"),
        ("Ann@BÜCHER.example", "ann@xn--bcher-kva.example"),
        ("jose\u0301@example.com", "josé@example.com"),  # NFD and NFC
    ],
)
def test_two_spellings_of_one_address_are_one(one, other):
    assert normalize_email(one) == normalize_email(other)


def test_an_idna_2008_domain_is_not_folded_into_another():
    """IDNA 2003 (Python's codec) turns straße.de into strasse.de: another domain, perhaps another person."""
    assert normalize_email("ann@straße.de") == "ann@xn--strae-oqa.de"
    assert normalize_email("ann@straße.de") != normalize_email("ann@strasse.de")


def test_a_domain_that_is_no_valid_name_is_compared_as_typed():
    assert normalize_email("ann@exa mple.ü") == "ann@exa mple.ü"


def historical_user(migration: str):
    """The User model as the users app's `migration` left it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    return MigrationExecutor(connection).loader.project_state(("users", migration)).apps.get_model("users", "User")


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_idn_users_and_names_twins_for_the_admin():
    from django.core.management import call_command

    from users.models import ActivityLog, User

    ann = User.objects.create_user(username="ann", email="ann@bücher.example", password="x")
    call_command("migrate", "users", "0010", verbosity=0)
    # As the release before wrote them: NFC and lowercased, the domain as typed. Written through the model as it was
    # then: columns added since do not exist in the table yet.
    OldUser = historical_user("0010_contact_lock_read_claim")
    OldUser.objects.filter(pk=ann.pk).update(email_normalized="ann@bücher.example")
    twin = OldUser.objects.create(
        username="twin",
        email="ann@xn--bcher-kva.example",
        email_normalized="ann@xn--bcher-kva.example",
        role_id=ann.role_id,
    )
    bob = OldUser.objects.create(
        username="bob", email="bob@bücher.example", email_normalized="bob@bücher.example", role_id=ann.role_id
    )
    call_command("migrate", "users", verbosity=0)
    assert User.objects.get(pk=bob.pk).email_normalized == "bob@xn--bcher-kva.example"
    assert User.objects.get(pk=ann.pk).email_normalized == "ann@bücher.example"  # the twin holds the new form
    line = ActivityLog.objects.get(message__contains="one mailbox")
    assert str(twin.pk) in line.message and str(ann.pk) in line.message
    call_command("migrate", "users", "0010", verbosity=0)
    assert OldUser.objects.get(pk=bob.pk).email_normalized == "bob@bücher.example"
    # Every app forward again: migrating users back unapplies other apps' migrations that depend on its later ones.
    call_command("migrate", verbosity=0)
