"""The emulator's HTTP: a request handler that puts body limits, authentication, the rate limit and faults in front
of the routes, and the threading server it runs in, which can end its keep-alive connections when stopped."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from .faults import FaultDecision
from .records import EmulatorInputError, IdentityConflict, json_bytes
from .routes import (
    APP_ROUTES,
    CONTROL_ROUTES,
    TRACK_ROUTES,
    Body,
    Call,
    Reply,
    Route,
    app_error,
    control_error,
    match_route,
    track_error,
)
from .state import EmulatorState

logger = logging.getLogger(__name__)

APP_API_PREFIX = "/v1/"
TRACK_API_PREFIX = "/api/"
CONTROL_PREFIX = "/_emulator/"

# Customer.io refuses batch requests over 500 KB and batch operations over 32 KB.
MAX_API_BODY_BYTES = 500 * 1024
# Benchmark fixtures of 100,000 people run to tens of megabytes.
MAX_CONTROL_BODY_BYTES = 512 * 1024 * 1024
# An oversized body is read and thrown away so the keep-alive connection stays usable; past this it isn't worth it.
MAX_DISCARDED_BODY_BYTES = 64 * 1024 * 1024
# Idle keep-alive connections give their thread back after this long.
IDLE_CONNECTION_SECONDS = 120
# Bursts of concurrent clients must not overflow the accept queue: refused SYNs are retried a second later,
# which would smear a burst across the rate limiter's window.
ACCEPT_QUEUE_SIZE = 1024

UNAUTHORIZED = {"meta": {"error": "Unauthorized request"}}
RATE_LIMITED = {"meta": {"error": "rate limited"}}


class Emulator(Protocol):
    """What the HTTP side needs of the EmulatorServer it answers for."""

    state: EmulatorState
    app_api_key: str
    site_id: str
    track_api_key: str
    stopping: threading.Event


def _bearer_matches(header: str | None, api_key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())


def _basic_matches(header: str | None, user: str, password: str) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        credentials = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(credentials, f"{user}:{password}".encode())


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a requests.Session reuses its connection
    server_version = "CustomerIoEmulator/1.0"
    timeout = IDLE_CONNECTION_SECONDS
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus delayed ACKs add 40 ms to each.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: a line per request on stderr drowns test and benchmark output."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    @property
    def _emulator(self) -> Emulator:
        return self.server.emulator

    def _dispatch(self) -> None:
        arrived_at = time.time()
        self._answered = False
        url = urlsplit(self.path)
        query = {name: values[0] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path.startswith(CONTROL_PREFIX):
                self._serve_control(url.path, query)
            elif url.path.startswith(APP_API_PREFIX):
                self._serve_api(APP_ROUTES, url.path, query, arrived_at)
            elif url.path.startswith(TRACK_API_PREFIX):
                self._serve_api(TRACK_ROUTES, url.path, query, arrived_at)
            elif self._read_body(0) is not None:
                self._send_json(404, {"error": "not a Customer.io API path"})
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or stalled; nobody is left to answer
        except Exception:
            logger.exception("emulator failed answering %s %s", self.command, self.path)
            self.close_connection = True
            if not self._answered:
                self._send_json(500, {"error": "the emulator failed; see its log"})

    # ---- API requests

    def _serve_api(self, routes: tuple[Route, ...], raw_path: str, query: dict, arrived_at: float) -> None:
        body = self._read_body(MAX_API_BODY_BYTES)
        if body is None:
            return
        state = self._emulator.state
        path = unquote(raw_path)
        entry = state.record_request(self.command, path, query, body.value, arrived_at)
        delay = state.latency_seconds()
        reply, fault = self._api_gate(routes is APP_ROUTES, path, body)
        if fault is not None:
            delay += fault.latency_seconds
            if fault.hang_up_after_seconds is not None:
                self._pause(delay + fault.hang_up_after_seconds)
                self.close_connection = True  # a timeout: the connection closes without an answer
                return
            if fault.fail_status is not None:
                reply = self._error_reply(fault.fail_status)
        if reply is None:
            reply = self._route(routes, raw_path, query, body)
        self._pause(delay)
        state.record_status(entry, reply.status)  # before answering, so the log is complete once the client has it
        self._send_json(reply.status, reply.payload, reply.headers)

    def _api_gate(self, is_app_api: bool, path: str, body: Body) -> tuple[Reply | None, FaultDecision | None]:
        """A refusal that comes before routing (413, 401, 429), else the fault to inject, if any."""
        emulator = self._emulator
        if body.too_large:
            return Reply(413, {"meta": {"error": f"request body over {MAX_API_BODY_BYTES} bytes"}}), None
        authorization = self.headers.get("Authorization")
        if is_app_api:
            authorized = _bearer_matches(authorization, emulator.app_api_key)
        else:
            authorized = _basic_matches(authorization, emulator.site_id, emulator.track_api_key)
        if not authorized:
            return Reply(401, UNAUTHORIZED), None
        if is_app_api and not emulator.state.admit_app_request():
            return self._error_reply(429), None
        return None, emulator.state.draw_fault(self.command, path)

    def _error_reply(self, status: int) -> Reply:
        if status == 429:
            headers = (("Retry-After", "1"),) if self._emulator.state.retry_after_header() else ()
            return Reply(429, RATE_LIMITED, headers)
        return Reply(status, {"meta": {"error": HTTPStatus(status).phrase}})

    def _route(self, routes: tuple[Route, ...], raw_path: str, query: dict, body: Body) -> Reply:
        is_app_api = routes is APP_ROUTES
        matched = match_route(routes, self.command, raw_path)
        if isinstance(matched, int):
            message = "Not Found" if matched == 404 else "Method Not Allowed"
            return app_error(matched, message) if is_app_api else Reply(matched, {"meta": {"error": message}})
        handler, params = matched
        try:
            return handler(Call(self._emulator.state, params, query, body))
        except EmulatorInputError as error:
            return app_error(400, str(error)) if is_app_api else track_error(400, str(error))

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            # Wakes early when the server stops, so stop() never waits out an emulated delay.
            self._emulator.stopping.wait(seconds)

    # ---- control requests

    def _serve_control(self, raw_path: str, query: dict) -> None:
        body = self._read_body(MAX_CONTROL_BODY_BYTES)
        if body is None:
            return
        self._send_json(*self._control_reply(raw_path, query, body))

    def _control_reply(self, raw_path: str, query: dict, body: Body) -> tuple[int, Any]:
        if not _is_loopback(self.client_address[0]):
            return 403, {"error": "control endpoints answer loopback clients only"}
        if body.too_large:
            return 413, {"error": f"request body over {MAX_CONTROL_BODY_BYTES} bytes"}
        if not body.valid:
            return 400, {"error": "the body is not valid JSON"}
        matched = match_route(CONTROL_ROUTES, self.command, raw_path)
        if isinstance(matched, int):
            return matched, {"error": HTTPStatus(matched).phrase}
        handler, params = matched
        try:
            reply = handler(Call(self._emulator.state, params, query, body))
        except EmulatorInputError as error:
            reply = control_error(400, str(error))
        except IdentityConflict as error:
            reply = control_error(409, str(error))
        return reply.status, reply.payload

    # ---- wire

    def _read_body(self, limit: int) -> Body | None:
        """The request body, parsed; None after answering a request whose body cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True  # the unread chunks would be taken for the next request
            self._send_json(411, {"error": "send the body with a Content-Length"})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send_json(400, {"error": "invalid Content-Length"})
            return None
        if length > limit:
            self._discard_body(length)
            return Body(empty=False, too_large=True)
        data = self.rfile.read(length)
        if len(data) < length:
            self.close_connection = True  # the client went away mid-body
            return None
        return Body.parse(data)

    def _discard_body(self, length: int) -> None:
        if length > MAX_DISCARDED_BODY_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json_bytes(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._answered = True
        self.wfile.write(body)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = ACCEPT_QUEUE_SIZE

    def __init__(self, address: tuple[str, int], emulator: Emulator):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.emulator = emulator
        self._open_connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS round trip that can stall start-up for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._connections_lock:
            self._open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End keep-alive connections, whose threads would otherwise go on answering after stop()."""
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its own thread
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that disconnect mid-answer are routine (timeouts, benchmarks stopping); only real failures matter.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.exception("emulator connection from %s failed", client_address)
