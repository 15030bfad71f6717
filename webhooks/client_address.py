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
                # Only a real address is believed (a port or garbage would not even fit the column).
                try:
                    return str(ipaddress.ip_address(address))
                except ValueError:
                    return remote
    return remote
