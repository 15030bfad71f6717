import os

import pytest
from django.db import connection

from settings_app.models import FieldMapping
from settings_app.seed import seed_field_mappings
from users.models import Role
from users.seed import seed_roles


def _uses_database(request) -> bool:
    if request.node.get_closest_marker("django_db"):
        return True
    return bool({"db", "transactional_db", "live_server", "django_db_setup"} & set(request.fixturenames))


@pytest.fixture(autouse=True)
def seeded_rows(request):
    """Migration-seeded rows (the default role, the default field mappings) in every test that uses the database.

    Transactional tests and live_server flush the tables afterwards, which also removes what the data migrations
    put there; re-seeding at the start of each test makes the order of tests irrelevant.
    """
    if _uses_database(request):
        marker = request.node.get_closest_marker("django_db")
        transactional = "transactional_db" in request.fixturenames or "live_server" in request.fixturenames
        if marker and marker.kwargs.get("transaction"):
            transactional = True
        request.getfixturevalue("transactional_db" if transactional else "db")
        seed_roles(Role)
        seed_field_mappings(FieldMapping)
    yield


@pytest.fixture
def subprocess_env(transactional_db):
    """Environment for a process a test starts (a server, a worker) so that it opens the test database.

    Requires a transactional test: rows written inside a normal test's transaction are invisible to others.
    """
    settings_dict = connection.settings_dict
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        database_url = f"sqlite:///{settings_dict['NAME']}"
    else:
        user = settings_dict.get("USER") or ""
        password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or "5432"
        database_url = f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.test_settings",
        "DATABASE_URL": database_url,
        "ENV_FILE": os.devnull,
    }
