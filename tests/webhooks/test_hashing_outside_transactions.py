"""A generated password is never hashed while a transaction holds SQLite's one write lock: issue 12 measured queued
accepts stalling for seconds behind a processing that hashed inside its transaction."""

import sqlite3

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection

from users.models import User

from .conftest import set_settings

pytestmark = pytest.mark.django_db(transaction=True)

WRITE_LOCK_FREE = []  # one entry per hash: could another connection take the write lock meanwhile?


class WriteLockProbingHasher(MD5PasswordHasher):
    """MD5, and while hashing, tries to take the database's write lock from a connection of its own. A rate-limiter
    grant holds it for a few milliseconds at most, hence the short wait."""

    algorithm = "probing_md5"

    def encode(self, password, salt):
        probe = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.5, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            WRITE_LOCK_FREE.append(True)
        except sqlite3.OperationalError:
            WRITE_LOCK_FREE.append(False)
        finally:
            probe.close()
        return super().encode(password, salt)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's database-wide write lock")
@pytest.mark.parametrize("async_", [False, True], ids=["synchronous", "queued"])
def test_no_transaction_holds_the_write_lock_while_a_password_is_hashed(hook, emulator, settings, async_):
    settings.PASSWORD_HASHERS = [f"{__name__}.WriteLockProbingHasher"]
    set_settings(return_password=True, return_password_field="site_password")
    WRITE_LOCK_FREE.clear()

    if async_:
        from webhooks.queue import drain

        accepted = hook("add", email="bob@example.com", **{"async": "true"}).json()
        drain.process(accepted["delivery_id"])
    else:
        assert hook("add", email="bob@example.com").status_code == 200

    assert WRITE_LOCK_FREE == [True]
    user = User.objects.get(email="bob@example.com")
    assert user.password.startswith("probing_md5$")
    assert user.check_password(emulator.customer("bob@example.com")["attributes"]["site_password"])
