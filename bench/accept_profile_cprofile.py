"""bench/accept_profile.py's third table: each column under cProfile, the cumulative time of named functions side by
side, and each webhook column's top functions by own time."""

import contextlib
import cProfile
import pstats
from pathlib import Path

from accept_profile_columns import Column
from production_site import ROOT

# (label, dotted name): the functions whose cumulative time per request is shown; a name that does not resolve (the
# view is being rewritten) is left out.
NAMED = [
    ("WSGIRequest() (environ -> request)", "django.core.handlers.wsgi.WSGIRequest.__init__"),
    ("URL resolving", "django.core.handlers.base.BaseHandler.resolve_request"),
    ("request.GET (QueryDict)", "django.core.handlers.wsgi.WSGIRequest.GET"),
    ("WebhookSettings.cached()", "settings_app.models.WebhookSettings.cached"),
    ("freshness.Memo.get (config reloads)", "settings_app.freshness.Memo.get"),
    ("DRF APIView.dispatch", "rest_framework.views.APIView.dispatch"),
    ("DRF initialize_request", "rest_framework.views.APIView.initialize_request"),
    ("DRF initial (auth, perms, throttles)", "rest_framework.views.APIView.initial"),
    ("DRF request.data (parse)", "rest_framework.request.Request.data"),
    ("DRF finalize_response", "rest_framework.views.APIView.finalize_response"),
    ("DRF JSONRenderer.render", "rest_framework.renderers.JSONRenderer.render"),
    ("json.loads", "json.loads"),
    ("json.dumps", "json.dumps"),
    ("transaction.atomic enter", "django.db.transaction.Atomic.__enter__"),
    ("transaction.atomic exit (COMMIT)", "django.db.transaction.Atomic.__exit__"),
    ("Django CursorWrapper.execute", "django.db.backends.utils.CursorWrapper.execute"),
    ("psycopg Cursor.execute", "psycopg.Cursor.execute"),
    ("psycopg Connection.commit", "psycopg.Connection.commit"),
    ("ensure_connection (pool checkout)", "django.db.backends.base.base.BaseDatabaseWrapper.ensure_connection"),
    ("close_old_connections (signals)", "django.db.close_old_connections"),
    ("django.request log line", "django.utils.log.log_response"),
    ("messages: default_storage()", "django.contrib.messages.storage.default_storage"),
    ("sessions: process_response", "django.contrib.sessions.middleware.SessionMiddleware.process_response"),
    ("csrf: process_view", "django.middleware.csrf.CsrfViewMiddleware.process_view"),
    ("access rules: is_never_locked", "users.access.rules.is_never_locked"),
]


def code_key(dotted: str):
    """(file, first line, name) of a function, as pstats keys it; None when it does not resolve."""
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                found = (
                    found.__dict__[attribute]
                    if isinstance(found, type) and attribute in found.__dict__
                    else getattr(found, attribute)
                )
        except (AttributeError, KeyError):
            return None
        found = getattr(found, "__func__", found)  # a classmethod: its function
        found = getattr(found, "fget", found)  # a property: its getter
        found = getattr(found, "func", found)  # a cached_property: its function
        code = getattr(found, "__code__", None)
        return (code.co_filename, code.co_firstlineno, code.co_name) if code else None
    return None


def profile(all_columns: list[Column], arguments) -> dict[str, pstats.Stats]:
    stats = {}
    for column in all_columns:
        for _ in range(min(arguments.warm_up, 50)):
            column.call(column.plain)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(arguments.profiled):
            column.call(column.plain)
        profiler.disable()
        stats[column.name] = pstats.Stats(profiler)
    return stats


def where(key) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    for marker in ("site-packages/", "lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        with contextlib.suppress(ValueError):
            filename = str(Path(filename).relative_to(ROOT))
    return f"{filename}:{line}({name})"


def print_profile(stats: dict[str, pstats.Stats], arguments) -> None:
    names = list(stats)
    per_request = 1e6 / arguments.profiled
    print(f"\n3. cProfile, {arguments.profiled} requests a column: cumulative us per request of named functions")
    print(f"{'':<40}" + "".join(f"{name:>11}" for name in names))
    for label, dotted in NAMED:
        key = code_key(dotted)
        if key is None:
            continue
        cells = []
        for name in names:
            entry = stats[name].stats.get(key)
            cells.append(f"{entry[3] * per_request:>11.1f}" if entry else f"{'-':>11}")
        if any(cell.strip() != "-" for cell in cells):
            print(f"{label:<40}" + "".join(cells))
    for name in names:
        if "floor" in name or name.endswith("/min"):
            continue
        entries = sorted(stats[name].stats.items(), key=lambda item: item[1][2], reverse=True)[: arguments.top]
        print(f"\n{name}: top {arguments.top} by own time (us per request own / cumulative, calls per request)")
        for key, (_, calls, own, cumulative, _) in entries:
            print(
                f"  {own * per_request:7.1f} {cumulative * per_request:8.1f} {calls / arguments.profiled:6.1f}  "
                f"{where(key)}"
            )
