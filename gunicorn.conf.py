"""gunicorn's settings for this site, read by default when gunicorn starts here: `gunicorn wpfusion_site.wsgi`.

Every value can be changed from the environment (or the site's .env file) without editing this file:

    GUNICORN_BIND      address to listen on (127.0.0.1:8000: the reverse proxy on this host forwards to it)
    WEB_CONCURRENCY    worker processes (default 2; about one per core)
    GUNICORN_THREADS   threads per worker process (default 8): requests served at once = workers x threads
    GUNICORN_TIMEOUT   seconds before a worker that stopped answering the arbiter is restarted (default 30)
    GUNICORN_GRACEFUL_TIMEOUT  seconds requests in progress may finish after SIGTERM (default 30)
    GUNICORN_ACCESS_LOG  where access lines go ("-" = standard output, the default; a file path; "" = none)
    GUNICORN_LOG_LEVEL gunicorn's own log level (default info)
    GUNICORN_WORKER_CLASS  gthread (default); bench/same_person.py compares it with sync (with GUNICORN_THREADS=1:
                       gunicorn runs sync workers with threads as gthread)
    PROMETHEUS_MULTIPROC_DIR  where each process writes its metrics for /metrics to add up (the systemd units set it;
                       with METRICS_TOKEN set and this unset, a private directory for this gunicorn's workers only)
    LOG_FORMAT         plain (default) or json, as for the site: gunicorn's error and access lines follow it
"""

import os
import shutil
import tempfile
from pathlib import Path

import environ
from gunicorn import glogging

from settings_app.redaction import scrub
from webhooks.log_context import REQUEST_ID_HEADER, LogContextFilter
from webhooks.log_json import JsonFormatter
from webhooks.logging import RedactSecretsFilter

# The same .env file as the site (ENV_FILE, else .env beside this file), so one file configures both.
_env = environ.Env()
_env_file = Path(os.environ.get("ENV_FILE") or Path(__file__).resolve().parent / ".env")
if _env_file.is_file():
    _env.read_env(_env_file)

bind = [address.strip() for address in _env.str("GUNICORN_BIND", default="127.0.0.1:8000").split(",")]

# Threaded workers: a synchronous webhook spends up to 3 s (WEBHOOK_SYNC_DEADLINE) waiting on Customer.io, and
# Customer.io sends one person's webhooks close together. Sync workers would leave the second one in the socket
# backlog until the first finished; threads receive it at once (it then waits on the person's lock, or is answered
# from the first one's result). bench/same_person.py measures this.
worker_class = _env.str("GUNICORN_WORKER_CLASS", default="gthread")
workers = _env.int("WEB_CONCURRENCY", default=2)
threads = _env.int("GUNICORN_THREADS", default=8)

# Longer than the 3 s synchronous webhook deadline plus a slow mail server (EMAIL_TIMEOUT, 10 s); short enough that
# a wedged worker process is replaced within a minute. With threads, a single slow request does not trip it: the
# site's own deadlines (Customer.io, mail) bound each request.
timeout = _env.int("GUNICORN_TIMEOUT", default=30)
# SIGTERM: finish the requests in progress for up to this long, then stop.
graceful_timeout = _env.int("GUNICORN_GRACEFUL_TIMEOUT", default=30)
keepalive = 5

# The access key travels in webhook query strings: the access log names the path (%(U)s) and never the query
# string or the full request line (%(q)s, %(r)s), nor the Referer (which may be a URL with a query string).
accesslog = _env.str("GUNICORN_ACCESS_LOG", default="-") or None
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = _env.str("GUNICORN_LOG_LEVEL", default="info")

# Whether a request came over HTTPS is decided by Django alone (SECURE_PROXY_SSL_HEADER, believed only from
# TRUSTED_PROXIES): gunicorn's own reading of X-Forwarded-Proto would be a second, different rule.
secure_scheme_headers = {}
forwarded_allow_ips = ""

# gunicorn's control socket (for `gunicornc`) would be created under $HOME, the checkout itself for the systemd
# units' user, which is read-only to the service: systemctl is the control interface here.
control_socket_disable = True

# Load the application before forking: a broken setting fails once, at start, and workers share the memory.
preload_app = True

# Metrics (/metrics): each worker counts in its own files in PROMETHEUS_MULTIPROC_DIR, and a scrape through any worker
# adds them all up (webhooks.metrics.files). Set before the application is loaded (preload_app), since the client reads
# it when first imported. Production's systemd units give gunicorn and the webhook_worker processes one directory
# (/run/wpfusion-metrics), so that one scrape holds both; without it, and with metrics on, this gunicorn's workers
# share a private directory, removed at exit (the workers' counts, not the webhook_worker processes').
_PRIVATE_METRICS_DIR = "WPFUSION_PRIVATE_METRICS_DIR"
if _env.str("METRICS_TOKEN", default="") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_PRIVATE_METRICS_DIR] = tempfile.mkdtemp(prefix="metrics-")


def on_starting(server):
    # Files of processes that ended before this start (an earlier run, a worker's crash) join the archive: totals
    # keep counting up, and the directory holds one file set per running process (not per process that ever ran).
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        from webhooks.metrics import files

        files.fold_ended_processes(metrics_dir)


def child_exit(server, worker):
    # A worker replaced (max requests, a timeout, a crash): its counts stay in the totals, its files go.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics_dir:
        from webhooks.metrics import files

        files.process_ended(metrics_dir, worker.pid)


def on_exit(server):
    private = os.environ.get(_PRIVATE_METRICS_DIR)
    if private:
        shutil.rmtree(private, ignore_errors=True)


_LOG_FORMAT = _env.str("LOG_FORMAT", default="plain").lower()
_REQUEST_ID = REQUEST_ID_HEADER.lower()


class _SiteLogger(glogging.Logger):
    """gunicorn's logs as the site's: secrets scrubbed from its error lines (one may quote a request line) and from
    access-logged paths (a set-password link's or a login link's token); with LOG_FORMAT=json, one JSON object per
    line, the access line's fields separate and with the request's X-Request-ID.

    The access log leaves out the webhook's refused requests (a wrong or missing key, the throttle's 429): the site
    logs those once per address per minute with a count (webhooks.intake.refusals), so a flood of them cannot fill
    the disk through this log either. The view marks them in the request's environ."""

    def setup(self, cfg):
        super().setup(cfg)  # run again on a configuration reload: gunicorn's own handlers are new then
        json = _LOG_FORMAT == "json"
        # The plain access line is not filtered: its format holds the path alone (atoms() below), and scrubbing
        # every header and environ value it is given would cost each request more than the line itself.
        for handler in (*self.error_log.handlers, *(self.access_log.handlers if json else ())):
            handler.addFilter(RedactSecretsFilter())
            if json:
                handler.addFilter(LogContextFilter())
                handler.setFormatter(JsonFormatter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        # A set-password link's or a login link's token is in the path itself.
        path = atoms.get("U") or ""
        if "/reset/" in path or "/login-link/" in path.lower():
            atoms["U"] = scrub(path)
        return atoms

    def access(self, resp, req, environ, request_time):
        if environ.get("wpfusion.refused"):
            return
        if _LOG_FORMAT != "json":
            super().access(resp, req, environ, request_time)
        elif self.access_log_enabled:
            self._json_access(resp, environ, request_time)

    def _json_access(self, resp, environ, request_time):
        # The path without the query string (it may hold the key), as the plain line; no Referer, for that reason.
        method, path = environ.get("REQUEST_METHOD", ""), scrub(environ.get("PATH_INFO", ""))
        status = str(resp.status).split(None, 1)[0]
        request_id = next((value for name, value in resp.headers if name.lower() == _REQUEST_ID), None)
        fields = {
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": method,
            "path": path,
            "protocol": environ.get("SERVER_PROTOCOL"),
            "status": int(status) if status.isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "request_id": request_id,
        }
        try:
            self.access_log.info("%s %s %s", method, path, status, extra=fields)
        except Exception:
            self.exception("Could not write an access line")


logger_class = _SiteLogger
