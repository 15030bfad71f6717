"""The one Customer.io client. Nothing else in the project builds Customer.io URLs.

The client is the App API (reads; Bearer key; rate limited by the shared limiter, `app_api.py`) and the Track API
(writes; HTTP Basic site id and key, `track_api.py`) over one wire (`transport.py`: credentials, timeouts, retries,
deadlines, errors).
"""

import threading
import time

from .app_api import AppAPI
from .track_api import TrackAPI, identify_operation
from .transport import ClientConfig, api_call_finished

# Public names that lived here before the client was split (site code connects to the signal from here).
__all__ = ["CustomerIOClient", "api_call_finished", "deadline_in", "get_client", "identify_operation"]


class CustomerIOClient(AppAPI, TrackAPI):
    """Every call the site makes to Customer.io, on one requests.Session and one shared rate limiter."""


def deadline_in(seconds: float | None) -> float | None:
    """A deadline `seconds` from now, in the form every client method takes."""
    return None if seconds is None else time.monotonic() + seconds


_clients = threading.local()


def get_client() -> CustomerIOClient:
    """The client configured from settings. One per thread (a requests.Session is not shared across threads), so
    connections are reused; rebuilt when the settings change (tests point it at the emulator)."""
    config = ClientConfig.from_settings()
    cached = getattr(_clients, "client", None)
    if cached is None or cached.config != config:
        cached = CustomerIOClient(config)
        _clients.client = cached
    return cached
