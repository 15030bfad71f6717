"""Request bodies at the WSGI layer, under the site (wpfusion_site/wsgi.py wraps the application in BodyFraming):
two gaps between Django and gunicorn that a caller sees.

- Chunked bodies. Django reads a body by its Content-Length only: a webhook sent with `Transfer-Encoding: chunked`
  (gunicorn de-chunks it and says so with `wsgi.input_terminated`) reached the view empty. For the webhook's URLs
  it is read here, up to one byte past WEBHOOK_MAX_BODY_BYTES, and handed on with its length; a longer one is
  handed on with that cap as its length, so the view's size check refuses it (413) as it refuses a declared one.
  Other URLs are left as Django has always seen them.
- Unread bodies and keep-alive. A request answered without its body being read (a wrong key, a 413) leaves the
  body on the connection. gunicorn drains at most 64 KiB of it before the next request, and past that closes the
  connection — after its answer promised keep-alive — so the client's next request on it fails. Here a leftover
  of up to DRAIN_LIMIT is read and dropped within DRAIN_SECONDS (cheaper than a new connection); a larger or
  slower one has gunicorn answer `Connection: close` instead (Response.force_close(): the server's own switch,
  reached through start_response). Django's development server reads every leftover body itself.

Hand-written: neither Django nor gunicorn offers either, and both are a few lines at the one layer that sees the
whole exchange.
"""

import contextlib
import io
import logging
import time

from django.conf import settings

from .middleware import marked_route

logger = logging.getLogger(__name__)

# The leftover body read and dropped to keep a connection: a refused webhook's body of a few hundred KB is read
# in well under a millisecond; past this, closing the connection costs the client less than sending it all.
DRAIN_LIMIT = 256 * 1024
# A client that declared a body and sends it slowly (or not at all) holds a thread no longer than this.
DRAIN_SECONDS = 2.0
_CHUNK = 64 * 1024
_warned_no_force_close = False


class _CountingInput:
    """wsgi.input, counting what the application reads of it."""

    __slots__ = ("stream", "consumed")

    def __init__(self, stream):
        self.stream = stream
        self.consumed = 0

    def read(self, *args):
        data = self.stream.read(*args)
        self.consumed += len(data)
        return data

    def readline(self, *args):
        data = self.stream.readline(*args)
        self.consumed += len(data)
        return data

    def __iter__(self):
        return iter(self.readline, b"")


class BodyFraming:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        if (
            chunked
            and environ.get("wsgi.input_terminated")
            and _is_webhook(environ)
            and not self._read_chunked(environ)
        ):
            result = self.application(environ, start_response)
            _force_close(start_response, environ)  # how much is left is unknown
            return result
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared <= 0:
            return self.application(environ, start_response)
        counting = environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])
        result = self.application(environ, start_response)
        leftover = declared - counting.consumed
        if (
            leftover > 0
            and "gunicorn.socket" in environ
            and (leftover > DRAIN_LIMIT or not _drained(counting.stream, leftover, environ["gunicorn.socket"]))
        ):
            _force_close(start_response, environ)
        return result

    @staticmethod
    def _read_chunked(environ) -> bool:
        """Whether the whole body was read."""
        cap = settings.WEBHOOK_MAX_BODY_BYTES + 1
        stream = environ["wsgi.input"]
        parts, size = [], 0
        while size < cap:
            part = stream.read(min(_CHUNK, cap - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
        environ["wsgi.input"] = io.BytesIO(b"".join(parts))
        environ["CONTENT_LENGTH"] = str(size)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return size < cap


def _is_webhook(environ) -> bool:
    """Whether the request goes to a webhook view (the ones WebhookShortcutMiddleware serves)."""
    path = environ.get("PATH_INFO", "") or "/"
    return marked_route(settings.ROOT_URLCONF, path) is not None


def _drained(stream, leftover: int, sock) -> bool:
    """Read and drop `leftover` bytes within DRAIN_SECONDS; whether all of them came."""
    deadline = time.monotonic() + DRAIN_SECONDS
    previous = sock.gettimeout()
    try:
        while leftover > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            part = stream.read(min(_CHUNK, leftover))
            if not part:
                return False
            leftover -= len(part)
        return True
    except (TimeoutError, OSError):
        return False
    finally:
        with contextlib.suppress(OSError):  # the client went away meanwhile
            sock.settimeout(previous)


def _force_close(start_response, environ) -> None:
    """Have gunicorn answer `Connection: close` (its Response, whose start_response this is). Django's development
    server reads leftover bodies itself, and needs nothing."""
    global _warned_no_force_close
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):
        force_close()
    elif "gunicorn.socket" in environ and not _warned_no_force_close:
        # Another WSGI wrapper between gunicorn and this one (an APM agent, say) hides gunicorn's start_response.
        _warned_no_force_close = True
        logger.warning("Cannot ask gunicorn to close a connection after an unread body: keep-alive may break")
