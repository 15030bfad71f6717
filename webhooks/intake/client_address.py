"""The client's address: the one rule the webhook, the refused-request throttle, the login lockout and the HTTPS
detection behind a proxy all follow."""

import ipaddress

from django.conf import settings


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or the address a trusted reverse proxy (TRUSTED_PROXIES) says it forwarded for.

    X-Forwarded-For is read from the right: each trusted proxy appends the address it received from, so the first
    address that is not a trusted proxy is the client. Anything else a client sends there is ignored."""
    remote = request.META.get("REMOTE_ADDR") or None
    trusted = set(settings.TRUSTED_PROXIES)
    if remote in trusted:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        for address in reversed([part for part in forwarded if part]):
            if address not in trusted:
                # Only a real address is believed (a port, an IPv6 zone "%eth0" or garbage would not even fit the
                # column).
                try:
                    parsed = ipaddress.ip_address(address)
                except ValueError:
                    return remote
                return remote if getattr(parsed, "scope_id", None) else str(parsed)
    return remote


class TrustedProxyHeadersMiddleware:
    """X-Forwarded-Proto is believed only from TRUSTED_PROXIES: from anyone else it is dropped before Django's
    SECURE_PROXY_SSL_HEADER (BEHIND_TLS_PROXY) could read it, so a client cannot pass plain HTTP off as HTTPS.
    X-Forwarded-For needs no such step: client_ip() reads it only from trusted proxies."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "HTTP_X_FORWARDED_PROTO" in request.META and request.META.get("REMOTE_ADDR") not in settings.TRUSTED_PROXIES:
            del request.META["HTTP_X_FORWARDED_PROTO"]
        return self.get_response(request)
