"""Failures injected into API requests, and the emulator's adjustable settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import EmulatorInputError, EventRequest, IdentifyRequest, non_negative, require_int

DEFAULT_TIMEOUT_FAULT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Failures to inject into API requests whose path starts with `path_prefix` (and whose method is `method`)."""

    fail_rate: float = 0.0
    fail_status: int = 500
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = DEFAULT_TIMEOUT_FAULT_SECONDS
    path_prefix: str = ""
    method: str | None = None
    seed: int | None = None
    reject_identifiers: frozenset[str] = frozenset()

    def matches(self, method: str, path: str) -> bool:
        return path.startswith(self.path_prefix) and (self.method is None or self.method == method)

    def rejects(self, request: IdentifyRequest | EventRequest) -> bool:
        """Whether a batch operation (an identify or an event) is to be refused: it names one of
        `reject_identifiers`."""
        return any(value in self.reject_identifiers for value in request.named_identifiers())

    def as_json(self) -> dict:
        return {
            "fail_rate": self.fail_rate,
            "fail_status": self.fail_status,
            "latency_ms": self.latency_ms,
            "timeout_rate": self.timeout_rate,
            "timeout_seconds": self.timeout_seconds,
            "path_prefix": self.path_prefix,
            "method": self.method,
            "seed": self.seed,
            "reject_identifiers": sorted(self.reject_identifiers),
        }

    @classmethod
    def from_json(cls, body: Any) -> FaultPlan:
        if not isinstance(body, Mapping):
            raise EmulatorInputError("faults must be an object")
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise EmulatorInputError(f"unknown fault keys: {sorted(unknown)}")
        defaults = cls()
        fail_status = require_int(body.get("fail_status", defaults.fail_status), "fail_status")
        if not 400 <= fail_status <= 599:
            raise EmulatorInputError("fail_status must be an HTTP error status (400-599)")
        method = body.get("method")
        if method is not None and not isinstance(method, str):
            raise EmulatorInputError("method must be a string")
        path_prefix = body.get("path_prefix") or ""
        if not isinstance(path_prefix, str):
            raise EmulatorInputError("path_prefix must be a string")
        seed = body.get("seed")
        if seed is not None:
            require_int(seed, "seed")
        reject_identifiers = body.get("reject_identifiers") or []
        if not isinstance(reject_identifiers, list) or not all(isinstance(v, str) for v in reject_identifiers):
            raise EmulatorInputError("reject_identifiers must be a list of strings")
        return cls(
            fail_rate=_rate(body.get("fail_rate", 0.0), "fail_rate"),
            fail_status=fail_status,
            latency_ms=non_negative(body.get("latency_ms", 0.0), "latency_ms"),
            timeout_rate=_rate(body.get("timeout_rate", 0.0), "timeout_rate"),
            timeout_seconds=non_negative(body.get("timeout_seconds", defaults.timeout_seconds), "timeout_seconds"),
            path_prefix=path_prefix,
            method=method.upper() if method else None,
            seed=seed,
            reject_identifiers=frozenset(reject_identifiers),
        )


def _rate(value: Any, name: str) -> float:
    rate = non_negative(value, name)
    if rate > 1:
        raise EmulatorInputError(f"{name} must be between 0 and 1")
    return rate


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What the fault plan does to one request: delay it, then fail it, hang up on it, or let it through."""

    latency_seconds: float = 0.0
    fail_status: int | None = None
    hang_up_after_seconds: float | None = None


@dataclass(slots=True)
class EmulatorSettings:
    rate_limit: int  # 0 disables the limiter
    retry_after_header: bool
    latency_ms: float

    def as_json(self) -> dict:
        return {
            "rate_limit": self.rate_limit,
            "retry_after_header": self.retry_after_header,
            "latency_ms": self.latency_ms,
        }
