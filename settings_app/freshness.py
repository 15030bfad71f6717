"""Configuration the hot path reads, held per process and seen fresh by every process within a second.

Each kind of configuration ("webhook_settings", "field_mappings", ...) has a version: a random token that changes
whenever the configuration does (`changed(kind)`, called from post_save/post_delete signals and by code that writes
with `QuerySet.update()`). A `Memo` keeps the loaded object in the process and, at most once a second, re-reads the
versions of every kind in one go — from the shared cache when Django's default cache is shared (Redis, REDIS_URL),
else with one small database query — and reloads the object only when its version moved. So a steady-state
request runs no configuration query, and a change made in the admin reaches every web process and worker within
`REVALIDATE_SECONDS`.

Why hand-written: Django's cache framework gives the shared store, but no library keeps per-process copies that are
revalidated against a version without a round trip per read, and falls back to the database without Redis.

The versions always live in the database (`ConfigVersion`), written in the same transaction as the change; with a
shared cache they are also copied there after the commit, and a cache that lost them (restart, eviction) is refilled
from the database. Tokens are random, not counters, so a cache that restarts from zero can never hand out a version
a process already holds for older data. While Redis is unreachable a process reads the versions from the database
(settings_app.shared_cache says when), and once Redis is back it drops the copies Redis kept, which may be older than
a change made during the outage.
"""

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from .config_versions import ConfigVersion

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The promise: a change is seen everywhere within this many seconds (plus one cache or database read).
REVALIDATE_SECONDS = 1.0
CACHE_KEY_PREFIX = "config-version:"

_lock = threading.Lock()
_reading = threading.Lock()  # held by the thread reading the versions
_kinds: set[str] = set()
_memos: list["Memo"] = []
# The versions last read, and when (time.monotonic()); 0 forces a read on the next access.
_versions: dict[str, str] = {}
_versions_read_at = 0.0
# The shared cache's `generation` when the versions were last read from it (settings_app.shared_cache).
_cache_generation = 0


def cache_is_shared() -> bool:
    """Whether the default cache is seen by every process (Redis) rather than held in each (LocMemCache)."""
    return "redis" in settings.CACHES["default"]["BACKEND"].lower()


def _shared_now() -> bool:
    """Whether versions can be read from the shared cache right now: not while this process has fallen back to its
    own memory because Redis is unreachable (settings_app.shared_cache)."""
    return cache_is_shared() and getattr(cache, "sharing", True)


def changed(kind: str) -> None:
    """Record that the configuration `kind` changed: every process reloads it within REVALIDATE_SECONDS.

    Call it inside the transaction that made the change (signals do): the database version commits with it, and the
    shared cache learns it only after the commit, so no process can load the old data under the new version."""
    token = secrets.token_hex(8)
    ConfigVersion.objects.update_or_create(kind=kind, defaults={"version": token})
    _forget_versions()  # this process sees its own change at once
    if cache_is_shared():
        transaction.on_commit(lambda: _publish(kind, token))
    # Another thread of this process may have re-read the versions before the commit: read them again after it.
    transaction.on_commit(_forget_versions)


def _publish(kind: str, token: str) -> None:
    try:
        cache.set(CACHE_KEY_PREFIX + kind, token, timeout=None)
    except Exception:
        # The database holds the version; processes reading the cache fall back to it when the cache fails.
        logger.warning("Could not publish a configuration version to the cache", exc_info=True)


def _forget_versions() -> None:
    global _versions_read_at
    _versions_read_at = 0.0


def forget_all() -> None:
    """Drop every memo of this process (tests: rows rolled back between tests send no signal)."""
    _forget_versions()
    for memo in _memos:
        memo.clear()


def current_versions() -> dict[str, str]:
    """The version of every registered kind, read at most once per REVALIDATE_SECONDS in this process."""
    global _versions, _versions_read_at
    read_at = _versions_read_at
    if time.monotonic() - read_at < REVALIDATE_SECONDS:
        return _versions
    # While another thread revalidates, answer from the versions read a second ago rather than queue behind it: with
    # the database away each read waits up to DATABASE_POOL_TIMEOUT, and a queue of threads would wait one such read
    # each, one after the other. Only a forced read (none yet, or a change this process made) is waited for.
    if not _reading.acquire(blocking=read_at == 0.0):
        return _versions
    try:
        if time.monotonic() - _versions_read_at >= REVALIDATE_SECONDS:
            _versions = _read_versions(sorted(_kinds))
            _versions_read_at = time.monotonic()
        return _versions
    finally:
        _reading.release()


def _read_versions(kinds: list[str]) -> dict[str, str]:
    global _cache_generation
    if _shared_now():
        try:
            generation = getattr(cache, "generation", 0)
            if generation != _cache_generation:
                # Redis is back after an outage: what it kept may predate a change made meanwhile (published to the
                # database only). Dropped, the versions are refilled from the database below.
                cache.delete_many([CACHE_KEY_PREFIX + kind for kind in kinds])
                _cache_generation = generation
            found = cache.get_many([CACHE_KEY_PREFIX + kind for kind in kinds])
            versions = {kind: found[CACHE_KEY_PREFIX + kind] for kind in kinds if CACHE_KEY_PREFIX + kind in found}
            missing = [kind for kind in kinds if kind not in versions]
            if missing:
                # The cache lost them (restart, eviction): refill from the database; add() never overwrites a
                # newer version published meanwhile.
                from_db = _read_versions_from_database(missing)
                for kind, version in from_db.items():
                    cache.add(CACHE_KEY_PREFIX + kind, version, timeout=None)
                versions.update(from_db)
            return versions
        except Exception:
            logger.warning("Could not read configuration versions from the cache; using the database", exc_info=True)
    return _read_versions_from_database(kinds)


def _read_versions_from_database(kinds: list[str]) -> dict[str, str]:
    versions = dict(ConfigVersion.objects.filter(kind__in=kinds).values_list("kind", "version"))
    # A kind never changed has no row yet: "" is its version until the first change.
    return {kind: versions.get(kind, "") for kind in kinds}


class Memo(Generic[T]):
    """One configuration object per process, reloaded by `load` when the kind's version moves.

    The object is shared by every thread of the process: treat it as read-only."""

    _empty = object()

    def __init__(self, kind: str, load: Callable[[], T]):
        self.kind = kind
        self._load = load
        self._value = self._empty
        self._version: str | None = None
        with _lock:
            _kinds.add(kind)
            _memos.append(self)
        _forget_versions()  # the next read includes the new kind

    def get(self) -> T:
        version = current_versions().get(self.kind, "")
        value = self._value
        if value is self._empty or version != self._version:
            value = self._load()
            # One assignment per attribute; a racing thread at worst loads the same thing twice.
            self._value, self._version = value, version
        return value

    def clear(self) -> None:
        self._value, self._version = self._empty, None


def watch(kind: str, *models) -> None:
    """Mark `kind` changed whenever a row of one of `models` is saved or deleted (admin, ORM)."""
    from django.db.models.signals import post_delete, post_save

    def on_change(sender, **kwargs):
        if kwargs.get("raw"):
            return  # loaddata: the rows are not live configuration yet
        changed(kind)

    for model in models:
        post_save.connect(on_change, sender=model, weak=False, dispatch_uid=f"freshness:{kind}:{model._meta.label}")
        post_delete.connect(
            on_change, sender=model, weak=False, dispatch_uid=f"freshness:{kind}:{model._meta.label}:delete"
        )
