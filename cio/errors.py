"""Typed Customer.io errors.

Messages name the HTTP method, the path and the status, never a key, an Authorization header or a request body
(a Track API body may hold a returned password).
"""


class CustomerIOError(Exception):
    """Base class. `retryable` tells callers whether trying again later can succeed."""

    retryable = False

    def __init__(self, message: str, *, method: str = "", path: str = "", status: int | None = None):
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status


class NotConfigured(CustomerIOError):
    """Credentials for the API being called are missing from the settings."""


class BadRequest(CustomerIOError):
    """400 (and other 4xx without a more specific class): the request itself is wrong; retrying will not help."""


class ContactNotFound(CustomerIOError):
    """404: Customer.io has no such person (or segment)."""


class Unauthorized(CustomerIOError):
    """401/403: the configured key is wrong or lacks access."""


class UpstreamError(CustomerIOError):
    """5xx, a timeout, a connection error, or the caller's deadline: Customer.io may answer later."""

    retryable = True


class RateLimited(UpstreamError):
    """429 after the retries allowed (or the deadline) ran out."""


class DeadlineExceeded(UpstreamError):
    """The caller's deadline passed before Customer.io answered (limiter waits and retries included)."""
