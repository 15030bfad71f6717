"""The lean DRF view both Customer.io endpoints (the journey webhook, the reporting webhook) are built on.

What DRF does per request that these endpoints do not need is left out: no metadata, no format suffixes, and the
stateless parsers, authentication, permission and negotiation classes built once per process from the view's
declarations instead of anew per request (bench/accept.py measured DRF's own cost). The throttle keeps its refusal on
the instance, so DRF's get_throttles() still builds it per request. Errors go through the project's one exception
handler (webhooks.intake.exceptions)."""

import functools

from rest_framework.views import APIView

from .exceptions import handle_exception


class LeanAPIView(APIView):
    metadata_class = None
    format_kwarg = None

    @classmethod
    @functools.cache
    def _shared(cls, attribute: str):
        declared = getattr(cls, attribute)
        return declared() if isinstance(declared, type) else [kind() for kind in declared]

    def get_parsers(self):
        return self._shared("parser_classes")

    def get_authenticators(self):
        return self._shared("authentication_classes")

    def get_permissions(self):
        return self._shared("permission_classes")

    def get_content_negotiator(self):
        return self._shared("content_negotiation_class")

    def get_exception_handler(self):
        return handle_exception
