"""Django's Redis cache, which a Redis outage does not turn into errors: while Redis cannot be reached, the process
uses a cache in its own memory instead, and tries Redis again every RETRY_SECONDS (settings: REDIS_RETRY_SECONDS).

What the site keeps in the cache can all be held per process for a while: the refused-request throttle's counters
(an address then gets WEBHOOK_REFUSED_PER_MINUTE refusals per process rather than in all), the segment sizes the
queue's planner prices scans with (read again from Customer.io), the admin overview's settled hours (counted again),
the previous-key notice (at worst written once per process). Configuration versions are not served from the
fallback: `sharing` tells settings_app.freshness to read them from the database meanwhile, and `generation` — one
more each time Redis comes back — tells it to drop the copies Redis kept through the outage, which may be older than
a change made meanwhile.

Each process writes one WARNING line when Redis goes away and one when it is back, never one per request.

Why hand-written: Django's RedisCache raises redis-py's errors from every call (its own docs leave fallbacks to the
caller), and no maintained package wraps it this way; django-redis' IGNORE_EXCEPTIONS would return None silently,
which the throttle's counters and the versions' refill cannot tell from a missing key.
"""

import logging
import threading
import time

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 5.0


class _Reachability:
    """Whether a process reaches one Redis: shared by every thread's cache object (Django makes one per thread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.down_since: float | None = None  # time.monotonic() when Redis was found unreachable, while it is
        self.retry_at = 0.0
        self.generation = 0


_reachability: dict[str, _Reachability] = {}
_reachability_lock = threading.Lock()


def _reachability_of(location: str) -> _Reachability:
    with _reachability_lock:
        return _reachability.setdefault(location, _Reachability())


class FallbackRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self.retry_seconds = float(params.get("RETRY_SECONDS", DEFAULT_RETRY_SECONDS))
        location = server if isinstance(server, str) else ",".join(server)
        kept = ("TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION")
        # LocMemCache objects of one name share their storage: every thread of the process counts in the same one.
        self._local = LocMemCache(f"redis-fallback:{location}", {key: params[key] for key in kept if key in params})
        self._state = _reachability_of(location)

    @property
    def sharing(self) -> bool:
        """Whether this process uses Redis now (False while it falls back to its own memory). Once RETRY_SECONDS
        have passed, asks Redis (a PING): a caller that reads around the cache meanwhile, as the configuration
        versions do, must still find out that it is back."""
        state = self._state
        if state.down_since is None:
            return True
        if time.monotonic() < state.retry_at:
            return False
        try:
            self._cache.get_client(write=True).ping()
        except RedisError as error:
            self._went_away(error)
            return False
        self._came_back()
        return True

    @property
    def generation(self) -> int:
        """One more each time this process found Redis back after an outage."""
        return self._state.generation

    def _call(self, name: str, *args, **kwargs):
        state = self._state
        if state.down_since is not None and time.monotonic() < state.retry_at:
            return getattr(self._local, name)(*args, **kwargs)
        try:
            result = getattr(super(), name)(*args, **kwargs)
        except RedisError as error:
            self._went_away(error)
            return getattr(self._local, name)(*args, **kwargs)
        if state.down_since is not None:
            self._came_back()
        return result

    def _went_away(self, error: RedisError) -> None:
        state = self._state
        with state.lock:
            first = state.down_since is None
            if first:
                state.down_since = time.monotonic()
            state.retry_at = time.monotonic() + self.retry_seconds
        if first:
            logger.warning(
                "Redis is unavailable (%s: %s): this process uses its own memory cache meanwhile (the refused-request "
                "throttle counts per process, configuration versions are read from the database) and tries Redis "
                "again every %.0f s",
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
                self.retry_seconds,
            )

    def _came_back(self) -> None:
        state = self._state
        with state.lock:
            since, state.down_since = state.down_since, None
            if since is None:
                return
            state.generation += 1
        self._local.clear()  # what was counted meanwhile is not read again: free it
        logger.warning("Redis is back after %.0f s: the cache is shared again", time.monotonic() - since)

    # Every public operation of Django's cache API that reaches Redis; the others (get_or_set, decr, the async ones)
    # are built on these by BaseCache.

    def add(self, *args, **kwargs):
        return self._call("add", *args, **kwargs)

    def get(self, *args, **kwargs):
        return self._call("get", *args, **kwargs)

    def set(self, *args, **kwargs):
        return self._call("set", *args, **kwargs)

    def touch(self, *args, **kwargs):
        return self._call("touch", *args, **kwargs)

    def delete(self, *args, **kwargs):
        return self._call("delete", *args, **kwargs)

    def get_many(self, *args, **kwargs):
        return self._call("get_many", *args, **kwargs)

    def has_key(self, *args, **kwargs):
        return self._call("has_key", *args, **kwargs)

    def incr(self, *args, **kwargs):
        return self._call("incr", *args, **kwargs)

    def set_many(self, *args, **kwargs):
        return self._call("set_many", *args, **kwargs)

    def delete_many(self, *args, **kwargs):
        return self._call("delete_many", *args, **kwargs)

    def clear(self):
        return self._call("clear")
