"""Passwords and the login pages: Argon2 first in production, PBKDF2 hashes still accepted (and upgraded), and
password guessing locked out per username and address."""

import pytest
from django.contrib.auth.hashers import make_password
from django.test import override_settings

from users.models import User
from wpfusion_site import settings as production

pytestmark = pytest.mark.django_db

PRODUCTION_HASHERS = override_settings(PASSWORD_HASHERS=production.PASSWORD_HASHERS)


def test_production_hashes_with_argon2_first_and_still_knows_pbkdf2():
    assert production.PASSWORD_HASHERS[0] == "users.hashers.SizedArgon2PasswordHasher"
    assert "django.contrib.auth.hashers.PBKDF2PasswordHasher" in production.PASSWORD_HASHERS
    assert "MD5" not in " ".join(production.PASSWORD_HASHERS)


@PRODUCTION_HASHERS
def test_a_new_user_gets_an_argon2_hash_of_the_configured_size(settings):
    user = User.objects.create_user("new", "new@example.com", "a-long-passphrase")
    algorithm, variety, version, params, *_ = user.password.split("$")
    assert (algorithm, variety) == ("argon2", "argon2id")
    assert params == f"m={settings.ARGON2_MEMORY_KIB},t={settings.ARGON2_TIME_COST},p={settings.ARGON2_PARALLELISM}"
    assert user.check_password("a-long-passphrase")


@PRODUCTION_HASHERS
def test_a_pbkdf2_hash_still_logs_in_and_is_upgraded_to_argon2(client):
    old_hash = make_password("an-old-passphrase", hasher="pbkdf2_sha256")
    user = User.objects.create_user("old", "old@example.com")
    User.objects.filter(pk=user.pk).update(password=old_hash)
    response = client.post("/accounts/login/", {"username": "old", "password": "an-old-passphrase"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password("an-old-passphrase")


def _login(client, password, address="203.0.113.5", username="owner"):
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=address,
    )


@override_settings(TRUSTED_PROXIES=["10.0.0.1"])
def test_ten_wrong_passwords_lock_out_that_username_from_that_address(client, caplog):
    User.objects.create_user("owner", "owner@example.com", "the-right-passphrase")
    for _ in range(9):
        assert _login(client, "guess").status_code == 200  # the form again, with an error
    locked = _login(client, "guess")
    assert locked.status_code == 429
    # Locked out: even the right password is refused from that address, for that username.
    assert _login(client, "the-right-passphrase").status_code == 429
    lockouts = [record.getMessage() for record in caplog.records if "Locking out" in record.getMessage()]
    assert lockouts and "owner" in lockouts[0] and "203.0.113.5" in lockouts[0]
    assert "guess" not in caplog.text
    # The address behind the trusted proxy counts, not the proxy's: another client logs in.
    assert _login(client, "the-right-passphrase", address="198.51.100.7").status_code == 302
    # Another username from the locked address is not locked.
    User.objects.create_user("other", "other@example.com", "another-passphrase")
    assert _login(client, "another-passphrase", username="other").status_code == 302


def test_the_admin_login_is_guarded_too(client):
    User.objects.create_superuser("boss", "boss@example.com", "the-boss-passphrase")
    for _ in range(10):
        client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "guess"})
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "the-boss-passphrase"})
    assert response.status_code == 429
    assert not client.session.get("_auth_user_id")


def test_a_locked_out_login_is_unlocked_by_the_reset_command(client):
    from django.core.management import call_command

    User.objects.create_user("owner", "owner@example.com", "the-right-passphrase")
    for _ in range(10):
        client.post("/accounts/login/", {"username": "owner", "password": "guess"})
    assert client.post("/accounts/login/", {"username": "owner", "password": "the-right-passphrase"}).status_code == 429
    call_command("axes_reset_username", "owner")
    assert client.post("/accounts/login/", {"username": "owner", "password": "the-right-passphrase"}).status_code == 302


@override_settings(TRUSTED_PROXIES=["10.0.0.1"])
def test_pruning_removes_failed_login_counts_past_their_cool_off_and_old_login_records(client, settings):
    import io
    from datetime import timedelta

    from axes.models import AccessAttempt, AccessLog
    from django.core.management import call_command
    from django.utils import timezone

    User.objects.create_user("owner", "owner@example.com", "the-right-passphrase")
    for n in range(5):  # a burst of guesses at five usernames, then silence
        _login(client, "guess", username=f"guess{n}")
    _login(client, "guess", username="recent", address="198.51.100.7")
    assert _login(client, "the-right-passphrase", address="198.51.100.8").status_code == 302
    assert AccessAttempt.objects.count() == 6
    past_cool_off = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(minutes=1)
    AccessAttempt.objects.exclude(username="recent").update(attempt_time=past_cool_off)
    AccessLog.objects.update(attempt_time=timezone.now() - timedelta(days=31))

    out = io.StringIO()
    call_command("prune_webhook_data", stdout=out)

    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["recent"]  # still counting
    assert AccessLog.objects.count() == 0
    assert "5 failed-login counts past their cool-off" in out.getvalue()
