"""Request bodies at the WSGI layer, under the site (wpfusion_site/wsgi.py wraps the application in BodyFraming):
two gaps between Django and the server that a caller sees.

- Chunked bodies. Django reads a body by its Content-Length only: a body sent with `Transfer-Encoding: chunked`
  (gunicorn de-chunks it and says so with `wsgi.input_terminated`) reached the view empty. It is read here, up to
  one byte past the largest body the site accepts, and handed on with its length; a longer one is handed on with
  that cap as its length, so the view's size check refuses it (413) as it refuses a declared one.
- Unread bodies and keep-alive. A request answered without its body being read (a wrong key, a 413) leaves the
  body on the connection. gunicorn drains at most 64 KiB of it before the next request, and past that closes the
  connection — after its answer promised keep-alive — so the client's next request on it fails. Here a leftover
  of up to DRAIN_LIMIT is read and dropped (cheaper than a new connection); a larger one has gunicorn answer
  `Connection: close` instead (Response.force_close(): the server's own switch, reached through start_response).
  Django's development server reads every leftover body itself; there this step has nothing to do.

Hand-written: neither Django nor gunicorn offers either, and both are a few lines at the one layer that sees the
whole exchange.
"""

import io

from django.conf import settings

# The leftover body read and dropped to keep a connection: a refused webhook's body of a few hundred KB is read
# in well under a millisecond; past this, closing the connection costs the client less than sending it all.
DRAIN_LIMIT = 256 * 1024
_CHUNK = 64 * 1024


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
        if chunked and environ.get("wsgi.input_terminated") and not self._read_chunked(environ):
            result = self.application(environ, start_response)
            _force_close(start_response)  # how much is left is unknown
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
        if leftover > 0:
            self._drain_or_close(counting.stream, leftover, start_response)
        return result

    @staticmethod
    def _read_chunked(environ) -> bool:
        """Whether the whole body was read."""
        cap = max(settings.WEBHOOK_MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) + 1
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

    @staticmethod
    def _drain_or_close(stream, leftover: int, start_response) -> None:
        if leftover <= DRAIN_LIMIT:
            while leftover > 0:
                part = stream.read(min(_CHUNK, leftover))
                if not part:
                    return
                leftover -= len(part)
            return
        _force_close(start_response)


def _force_close(start_response) -> None:
    """Have gunicorn answer `Connection: close` (its Response, whose start_response this is). Other servers: Django's
    development server reads leftover bodies itself."""
    force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
    if callable(force_close):
        force_close()
