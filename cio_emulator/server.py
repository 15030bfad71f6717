"""The emulator's server: what tests, benchmarks and `manage.py cio_emulator` start and stop (the HTTP itself is in
handler.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fixtures import read_fixture
from .handler import EmulatorHTTPServer
from .state import EmulatorState


class EmulatorServer:
    """The emulator's HTTP server. `start()` serves from a daemon thread; `with EmulatorServer() as emulator:` too.

    `state` (EmulatorState) gives tests direct access to what the control endpoints do over HTTP.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        fixture: Mapping | str | Path | None = None,
        rate_limit: int | None = 10,
        latency_ms: float = 0,
        app_api_key: str = "emulator-app-key",
        site_id: str = "emulator-site",
        track_api_key: str = "emulator-track-key",
        retry_after_header: bool = True,
        log_bodies: bool = True,
    ):
        self.host = host
        self.requested_port = port
        self.app_api_key = app_api_key
        self.site_id = site_id
        self.track_api_key = track_api_key
        self.state = EmulatorState(
            rate_limit=rate_limit, latency_ms=latency_ms, retry_after_header=retry_after_header, log_bodies=log_bodies
        )
        if fixture is not None:
            self.state.load_fixture(read_fixture(fixture))
        self.stopping = threading.Event()
        self._lifecycle_lock = threading.Lock()
        self._httpd: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        """Bind (port 0 picks a free port) and serve from a daemon thread. Raises OSError if the port is taken."""
        with self._lifecycle_lock:
            if self._httpd is not None:
                return self
            self.stopping.clear()
            self._httpd = EmulatorHTTPServer((self.host, self.requested_port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="cio-emulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; requests being answered end early. Safe to call twice."""
        with self._lifecycle_lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        self.stopping.set()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_connections()
        thread.join(timeout=5)

    def request_stop(self) -> None:
        """Ask serve_forever() to return. Only sets a flag, so it is safe inside a signal handler."""
        self.stopping.set()

    def serve_forever(self) -> None:
        """Serve until request_stop() or stop() is called, or KeyboardInterrupt; then stop cleanly."""
        self.start()
        try:
            self.stopping.wait()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def requests(self, since: int = 0, path_prefix: str | None = None, method: str | None = None) -> list[dict]:
        """The request log (see EmulatorState.requests)."""
        return self.state.requests(since, path_prefix, method)

    def events(self, identifier: str, name: str | None = None) -> list[dict]:
        """The events recorded for a person, oldest first; [] when there is no such person (see
        EmulatorControl.events)."""
        return self.state.events(identifier, name) or []

    def all_events(self, name: str | None = None) -> list[dict]:
        """Every event recorded, oldest first, with its person's identifiers (see EmulatorState.all_events)."""
        return self.state.all_events(name)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
