"""The site's LOGGING: console lines, plain or JSON, each scrubbed of secrets first and given the request's and
delivery's ids (settings.py reads LOG_LEVEL and LOG_FORMAT and passes them here)."""


def logging_config(log_level: str, log_format: str) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        # Each handler scrubs secrets first, then adds the request and delivery ids, then formats.
        "filters": {
            "redact_secrets": {"()": "webhooks.logging.RedactSecretsFilter"},
            "log_context": {"()": "webhooks.log_context.LogContextFilter"},
            "one_line_warning": {"()": "webhooks.logging.OneLineWarning"},
            "require_debug_true": {"()": "django.utils.log.RequireDebugTrue"},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "webhooks.log_json.JsonFormatter"},
            "django.server": {
                "()": "django.utils.log.ServerFormatter",
                "format": "[{server_time}] {message}",
                "style": "{",
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["redact_secrets", "log_context"],
            },
            "django.server": {
                "class": "logging.StreamHandler",
                "formatter": "json" if log_format == "json" else "django.server",
                "filters": ["redact_secrets", "log_context"],
            },
        },
        "root": {"handlers": ["console"], "level": log_level},
        "loggers": {
            "django": {"handlers": ["console"], "level": log_level, "propagate": False},
            "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
            # A request for a host not in ALLOWED_HOSTS is a stranger's probe, not the site's failure: one WARNING line,
            # not an ERROR with a traceback.
            "django.security.DisallowedHost": {
                "handlers": ["console"],
                "level": "WARNING",
                "filters": ["one_line_warning"],
                "propagate": False,
            },
            # psycopg's pool warns at each failed attempt to reconnect (every second or two per process while the
            # database is away): the site writes one line when it goes and one when it is back (webhooks.outages).
            "psycopg.pool": {"level": "ERROR"},
            # django-axes: lockouts and repeated failures are warnings; its start-up and per-attempt lines are noise.
            "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        },
    }
