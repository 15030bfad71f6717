"""Settings for the site. Every value that differs between deployments comes from the environment
(or a `.env` file beside manage.py); `.env.example` documents each one."""

import os
from datetime import timedelta
from pathlib import Path

import environ

from . import allowed_networks
from .connections import cache_settings, postgresql_options
from .logging_config import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE points elsewhere (or at nothing) when the project's own .env must not be read.
ENV_FILE = Path(environ.Env().str("ENV_FILE", default=str(BASE_DIR / ".env")))
if ENV_FILE.is_file():
    env.read_env(ENV_FILE)

# Off unless asked for, so a forgotten setting is the safe one in production.
DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        # A one-line refusal reads better than a traceback from deep inside Django.
        raise SystemExit(
            "SECRET_KEY is not set: set SECRET_KEY in the environment or .env (required when DEBUG is off)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-debug-on"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# The public base URL, used to print webhook URLs and to build links in emails.
SITE_BASE_URL = env.str("SITE_BASE_URL", default="").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "solo",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "users",
    "settings_app",
    "webhooks",
    "cio",
]
# The Customer.io emulator (`manage.py cio_emulator`) serves development, tests and benchmarks; production has no
# use for it. ENABLE_CIO_EMULATOR installs it with DEBUG off (CI's production smoke test, benchmarks).
ENABLE_CIO_EMULATOR = env.bool("ENABLE_CIO_EMULATOR", default=False)
if DEBUG or ENABLE_CIO_EMULATOR:
    INSTALLED_APPS.append("cio_emulator")
# The demo members area (`make run` sets ENABLE_DEMO): pages gated by tags, for trying the site. Never in production.
ENABLE_DEMO = env.bool("ENABLE_DEMO", default=False)
if ENABLE_DEMO:
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    # Outermost: every request, the webhook's included, runs inside its request id (log lines, X-Request-ID).
    "webhooks.log_context.RequestIdMiddleware",
    # With DEBUG on, takes every access key out of Django's 404/500 debug pages.
    "webhooks.logging.ScrubDebugPagesMiddleware",
    # First: X-Forwarded-Proto counts only from TRUSTED_PROXIES, before anything asks whether the request is secure.
    "webhooks.intake.client_address.TrustedProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Customer.io's webhook is served here: the middleware below (sessions, CSRF, logins, messages, access rules,
    # clickjacking, django-axes) has nothing to do for it and never runs for it.
    "webhooks.intake.middleware.WebhookShortcutMiddleware",
    # The admin's CSS and JavaScript in production (collectstatic first): compressed, hashed names, cached for a year.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Access rules (users.AccessRule): after authentication, so that a covered page knows its user.
    "users.access.AccessRuleMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "wpfusion_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "wpfusion_site.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the background worker are separate processes: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no deadlock on lock upgrade), and the timeout makes a
    # writer wait for the lock instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Connections. PostgreSQL: Django's psycopg pool in each process (DATABASE_POOL, on by default), with up to
# DATABASE_POOL_MAX_SIZE connections — keep it at least GUNICORN_THREADS so no request thread waits for one;
# connections are checked before use, so a restarted database costs no failed request. Without the pool,
# CONN_MAX_AGE keeps one connection per thread (0: a new connection per request; bench/accept.py --connection-modes).
# With the database gone, a request waits at most DATABASE_POOL_TIMEOUT for a connection, then answers 503: under
# Customer.io's 4 s, which retries it (wpfusion_site.connections, webhooks.outages).
DATABASE_POOL = env.bool("DATABASE_POOL", default=True)
# A connection is checked before use (with the pool: as it leaves it), so one the database closed is replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["OPTIONS"] = postgresql_options(
        DATABASES["default"].get("OPTIONS") or {},
        pool=DATABASE_POOL,
        min_size=env.int("DATABASE_POOL_MIN_SIZE", default=1),
        max_size=env.int("DATABASE_POOL_MAX_SIZE", default=8),
        timeout=env.float("DATABASE_POOL_TIMEOUT", default=3.0),
        connect_timeout=env.float("DATABASE_CONNECT_TIMEOUT", default=3.0),
    )
if "pool" not in DATABASES["default"].get("OPTIONS", {}):
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache every process shares when REDIS_URL is set (configuration versions, the refused-request throttle);
# without it each process has its own, and configuration versions are read from the database instead. While Redis
# cannot be reached, each process falls back to its own memory and tries Redis again every REDIS_RETRY_SECONDS.
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = cache_settings(
    REDIS_URL,
    timeout=env.float("REDIS_TIMEOUT", default=0.5),
    retry_seconds=env.float("REDIS_RETRY_SECONDS", default=5.0),
)

# REMOTE_ADDR values of reverse proxies whose X-Forwarded-For (and X-Forwarded-Proto) may be believed: the one list
# behind the client address (webhooks.intake.client_address.client_ip) everywhere. WEBHOOK_TRUSTED_PROXIES is its old,
# deprecated name, still read when TRUSTED_PROXIES is not set.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=env.list("WEBHOOK_TRUSTED_PROXIES", default=[]))

# HTTPS. With DEBUG off: HTTP is redirected to HTTPS, cookies are sent over HTTPS only, and browsers are told to
# use HTTPS for a year (HSTS). SECURE_SSL_REDIRECT=false turns all of it down for a plain-HTTP staging host; each
# can also be set on its own.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_SSL_REDIRECT)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if SECURE_SSL_REDIRECT else 0)
# Whether HSTS also covers every subdomain, and whether the domain goes on the browsers' preload list, are the site
# owner's decisions (both are hard to undo): off unless turned on, and their two `check --deploy` warnings silenced
# on purpose below.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
# Load balancers and monitors probe over plain HTTP; a Prometheus on this host scrapes gunicorn over loopback.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
# Behind a proxy that terminates TLS: believe its X-Forwarded-Proto (only from TRUSTED_PROXIES, see
# webhooks.intake.client_address.TrustedProxyHeadersMiddleware) to know a request came over HTTPS.
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
if BEHIND_TLS_PROXY:
    if not TRUSTED_PROXIES:
        raise SystemExit("BEHIND_TLS_PROXY is on but TRUSTED_PROXIES is empty: set it to the proxy's address.")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

AUTH_USER_MODEL = "users.User"
# A login without ?next= lands on the account page (users.views.account).
LOGIN_REDIRECT_URL = "account"

# Password guessing on the admin login and /accounts/login/ (both go through authenticate()): django-axes counts
# failures per username and client address together, in the database (so every web process sees them), and locks
# that pair out for an hour after 10. `python manage.py axes_reset_username NAME` (or `axes_reset`) unlocks.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(hours=env.float("LOGIN_LOCKOUT_HOURS", default=1.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Log lines name the username and address (the operator needs them to unlock; the admin lists them anyway); the
# password field is always masked by django-axes.
AXES_SENSITIVE_PARAMETERS = []
# The client address as the webhook sees it: REMOTE_ADDR, or X-Forwarded-For from a trusted proxy only.
AXES_CLIENT_IP_CALLABLE = "webhooks.intake.client_address.client_ip"

# Argon2id first: memory-hard, and far cheaper in CPU per hash than PBKDF2's 1,000,000 iterations (which bound how
# fast imports can make users with generated passwords). PBKDF2 stays so existing hashes verify; Django re-hashes
# them with Argon2 at the next login. The default sizing (46 MiB, one pass, one lane: OWASP's first Argon2id
# profile) costs about a tenth of a PBKDF2 hash in CPU on a 2-core host; see docs/security.md, "Passwords and logins".
PASSWORD_HASHERS = [
    "users.hashers.SizedArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
]
ARGON2_MEMORY_KIB = env.int("ARGON2_MEMORY_KIB", default=46 * 1024)
ARGON2_TIME_COST = env.int("ARGON2_TIME_COST", default=1)
ARGON2_PARALLELISM = env.int("ARGON2_PARALLELISM", default=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic writes hashed, compressed copies; whitenoise serves them with a year's cache lifetime.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Mail. Without EMAIL_URL: printed on the console with DEBUG on (development); with DEBUG off nothing is sent and
# nothing is printed (a welcome email holds a set-password link, which must not land in a log) — `check --deploy`
# and the activity log say so.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    EMAIL_BACKEND = "users.mail.MailNotConfiguredBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")
# A mail server that hangs must not hold a webhook (or a worker's lease) forever.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# Customer.io. The API hosts follow the region unless overridden (the emulator overrides both).
CUSTOMERIO_REGION = env.str("CUSTOMERIO_REGION", default="us").lower()
if CUSTOMERIO_REGION not in ("us", "eu"):
    raise SystemExit(f"CUSTOMERIO_REGION must be 'us' or 'eu', not {CUSTOMERIO_REGION!r}.")
CUSTOMERIO_APP_API_KEY = env.str("CUSTOMERIO_APP_API_KEY", default="")
CUSTOMERIO_SITE_ID = env.str("CUSTOMERIO_SITE_ID", default="")
CUSTOMERIO_TRACK_API_KEY = env.str("CUSTOMERIO_TRACK_API_KEY", default="")
CUSTOMERIO_APP_API_URL = env.str("CUSTOMERIO_APP_API_URL", default="").rstrip("/")
CUSTOMERIO_TRACK_API_URL = env.str("CUSTOMERIO_TRACK_API_URL", default="").rstrip("/")
# App API requests per second for all processes together (Customer.io allows 10); 0 turns the limiter off.
CUSTOMERIO_APP_API_RATE = env.int("CUSTOMERIO_APP_API_RATE", default=10)
CUSTOMERIO_CONNECT_TIMEOUT = env.float("CUSTOMERIO_CONNECT_TIMEOUT", default=3.05)
CUSTOMERIO_READ_TIMEOUT = env.float("CUSTOMERIO_READ_TIMEOUT", default=10.0)
# Retries after the first attempt for 429, 5xx, timeouts and connection errors (a deadline may stop them sooner).
CUSTOMERIO_MAX_RETRIES = env.int("CUSTOMERIO_MAX_RETRIES", default=4)
# First retry waits about this long (seconds); each further retry doubles it, with jitter, up to 30 s.
CUSTOMERIO_RETRY_BACKOFF = env.float("CUSTOMERIO_RETRY_BACKOFF", default=0.5)
# The reporting webhook's signing keys (message events, webhooks.intake.reporting): several during a rotation; none
# turns /webhooks/customerio/reporting/ off (404).
CUSTOMERIO_REPORTING_SIGNING_KEYS = [
    key.strip() for key in env.list("CUSTOMERIO_REPORTING_SIGNING_KEYS", default=[]) if key.strip()
]

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}

# The webhook.
# Bodies larger than this are refused with 413 before they are read.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=64 * 1024)
# Seconds the synchronous path may spend on Customer.io (limiter waits and retries included), counted from the
# request's arrival; Customer.io itself gives up after 4 s and retries.
WEBHOOK_SYNC_DEADLINE = env.float("WEBHOOK_SYNC_DEADLINE", default=3.0)

# Requests refused for a wrong or missing key (webhooks.intake.refusals): after this many in a minute from one
# address (IPv6: its /64), the rest of the minute get 429 with Retry-After instead of 403; 0 turns the throttle off.
# Counted in the cache (shared through Redis with REDIS_URL, per process otherwise); the right key is never counted
# or throttled.
WEBHOOK_REFUSED_PER_MINUTE = env.int("WEBHOOK_REFUSED_PER_MINUTE", default=20)
# Most address rows in the refused-requests table (one per address per hour); addresses past it are counted together
# in one overflow row per hour.
WEBHOOK_REFUSED_MAX_ROWS = env.int("WEBHOOK_REFUSED_MAX_ROWS", default=1000)

# Journey webhooks only from these networks (CIDRs, and the presets customerio-us / customerio-eu: Customer.io's
# published addresses); from anywhere else they are refused as a wrong key. Empty: any address.
WEBHOOK_ALLOWED_NETWORKS = allowed_networks.parse(env.str("WEBHOOK_ALLOWED_NETWORKS", default=""))

# Hours a key replaced by "Regenerate" (or `rotate_access_key`) keeps working, so journeys can be updated.
WEBHOOK_KEY_GRACE_HOURS = env.float("WEBHOOK_KEY_GRACE_HOURS", default=24.0)

# Background processing (queued mode): Django's Tasks API with the database backend; `manage.py webhook_worker`
# runs the tasks. Without TASKS the backport would silently run tasks inline.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# A delivery being processed holds a lease, renewed while it runs; an expired lease means its worker died.
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=60)
# Seconds one background processing may spend on Customer.io (limiter waits and retries included).
WEBHOOK_TASK_DEADLINE = env.float("WEBHOOK_TASK_DEADLINE", default=30.0)
# Retries of a delivery that met a Customer.io failure: first after about this many seconds, doubling up to the
# cap, for this long in all (then the delivery is failed).
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=10.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=3600.0)
WEBHOOK_RETRY_FOR = env.int("WEBHOOK_RETRY_FOR", default=24 * 3600)
# How often each worker looks for deliveries whose worker died or whose task went missing.
WEBHOOK_SWEEP_SECONDS = env.float("WEBHOOK_SWEEP_SECONDS", default=5.0)
# A worker whose loop has neither polled nor finished a task for this long counts as stuck: it stops writing its
# heartbeat (so /healthz shows it ageing). Longer than a task may take (a batch of contacts' Customer.io calls).
WEBHOOK_WORKER_STALL_SECONDS = env.float("WEBHOOK_WORKER_STALL_SECONDS", default=300.0)
# Most contacts whose attributes one worker fetches in one batch call (Customer.io allows 100).
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=100)
# Most waiting deliveries one worker claims at once when they change users: their segments are read for the whole
# batch at once, one call per contact or membership scans, whichever is cheaper (webhooks.queue.planning).
WEBHOOK_PLAN_CLAIM_LIMIT = env.int("WEBHOOK_PLAN_CLAIM_LIMIT", default=25_000)
# Of those, at most this many contacts with an `update` or `add` (processed one at a time, ~25 ms each; update_tags
# are written in bulk): the rest are left to the next claim by any worker, so that a broadcast of updates is shared
# out rather than held by one worker while the others idle. Each claim costs a scan round (a call per segment
# page), so 2,000 keeps a 20,000-person broadcast near 10 rounds.
WEBHOOK_PLAN_ONE_BY_ONE_LIMIT = env.int("WEBHOOK_PLAN_ONE_BY_ONE_LIMIT", default=2_000)
# A burst still arriving is let settle (this long without a new delivery) before a batch big enough for scans is
# claimed, but the oldest waiting delivery never waits longer than WEBHOOK_PLAN_MAX_WAIT_SECONDS for it.
WEBHOOK_PLAN_SETTLE_SECONDS = env.float("WEBHOOK_PLAN_SETTLE_SECONDS", default=1.0)
WEBHOOK_PLAN_MAX_WAIT_SECONDS = env.float("WEBHOOK_PLAN_MAX_WAIT_SECONDS", default=10.0)

# Seconds a tag applied or removed on the site is protected from Customer.io's lagging segment reads after the
# change was sent (update_tags or cio_resync_tags running meanwhile keep the site's version).
TAG_CHANGE_SETTLE_SECONDS = env.int("TAG_CHANGE_SETTLE_SECONDS", default=600)

# Prometheus metrics (/metrics, webhooks.metrics): off (404) without a scraper's bearer token, long enough not to guess.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if 0 < len(METRICS_TOKEN) < 32:
    raise SystemExit("METRICS_TOKEN is too short to keep /metrics private: give it 32 characters or more.")
# The client's multiprocess mode (each process writes its counts here, /metrics adds them up); a wrong path stops the
# site with a sentence rather than a counter's traceback.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR and not (
    Path(PROMETHEUS_MULTIPROC_DIR).is_dir() and os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK | os.X_OK)
):
    raise SystemExit(f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR} is not a directory this user can write.")

# The access key travels in webhook URLs: keep it out of request log lines and error reports.
DEFAULT_EXCEPTION_REPORTER = "webhooks.logging.SafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "webhooks.logging.SafeReporterFilter"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# plain: readable lines; json: one JSON object per line with the request, delivery and action ids (webhooks.log_json).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise SystemExit(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}.")
LOGGING = logging_config(LOG_LEVEL, LOG_FORMAT)

# Error reports to Sentry (or a server speaking its protocol): off unless SENTRY_DSN is set. What is sent, and what is
# scrubbed from it first (access keys, passwords, API keys, set-password links): webhooks.error_reports.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from webhooks.error_reports import start as start_error_reports

    start_error_reports(
        SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default=""),
        release=env.str("SENTRY_RELEASE", default=""),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),  # 0: errors only, no traces
    )
