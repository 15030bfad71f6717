"""How each process reaches PostgreSQL and Redis, built from the values settings.py reads from the environment (the
variables themselves are read there, so that docs/settings.md's check sees every one).

Both are written for the server going away — a restart, a failover, a network cut — rather than for the steady
state alone: every wait is bounded well under Customer.io's 4 s, and both come back by themselves."""

# psycopg_pool gives up on a connection it keeps failing to make after this long (its own default is 5 minutes) and
# makes a new one at the next request instead. Its retries back off from 1 s doubling each time, so with the default
# a database back after a 60 s outage would be noticed up to a minute later; with 5 s, within a second or two of the
# next request.
POOL_RECONNECT_SECONDS = 5.0


def postgresql_options(
    options: dict, *, pool: bool, min_size: int, max_size: int, timeout: float, connect_timeout: float
) -> dict:
    """The OPTIONS of a PostgreSQL database: `options` (from DATABASE_URL's query string) plus a connect timeout
    and, with `pool`, Django's psycopg pool. A value DATABASE_URL sets itself is kept."""
    options = dict(options)
    # libpq (and psycopg) wait this long for a server that does not answer at all (a host down, a firewall dropping
    # packets); a stopped one refuses at once. Whole seconds, 2 at least (libpq's rule).
    options.setdefault("connect_timeout", max(2, round(connect_timeout)))
    if pool:
        options["pool"] = {
            "min_size": min_size,
            "max_size": max_size,
            # Seconds a request waits for a connection before failing — with the database gone, the 503's wait.
            "timeout": timeout,
            "reconnect_timeout": POOL_RECONNECT_SECONDS,
        }
    return options


def cache_settings(redis_url: str, *, timeout: float, retry_seconds: float) -> dict:
    """Django's CACHES: Redis shared by every process when `redis_url` is set — falling back to each process's own
    memory while Redis cannot be reached, and trying it again every `retry_seconds` (settings_app.shared_cache) —
    else each process's own memory."""
    if not redis_url:
        return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    return {
        "default": {
            "BACKEND": "settings_app.shared_cache.FallbackRedisCache",
            "LOCATION": redis_url,
            "RETRY_SECONDS": retry_seconds,
            # Passed to redis-py's connection pool: a Redis that does not answer costs one request this long, once
            # (the process then uses its own memory until retry_seconds have passed), not redis-py's default 5 s.
            "OPTIONS": {"socket_connect_timeout": timeout, "socket_timeout": timeout},
        }
    }
