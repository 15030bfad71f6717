"""The views bench/accept.py measures the webhook against, served by bench/minimal_floor_settings.py (Security and
Common middleware only: the minimal floor) and by bench/floor_settings.py (every production middleware: the
full-settings floor); never by the site.

- /floor: a bare DRF APIView that parses the JSON body, commits one INSERT into a table of its own (bench_floor,
  created by the benchmark) before the answer, on the site's own database connection settings, and answers JSON:
  what durability costs at the least.
- /bare: the same view without the INSERT (no database).
- /healthz: answers, so that the benchmark knows the server is up.
"""

from django.db import connection
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView


class BareView(APIView):
    authentication_classes = []
    permission_classes = []
    renderer_classes = [JSONRenderer]

    def post(self, request):
        return Response({"status": "ok", "fields": len(request.data)})


class FloorView(BareView):
    def post(self, request):
        # Autocommit: the INSERT is its own transaction, committed (synchronous_commit on) before the answer.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_floor (received_at, body) VALUES (%s, %s)",
                [timezone.now(), request.body.decode("utf-8", "replace")],
            )
        return Response({"status": "ok", "fields": len(request.data)})


urlpatterns = [
    path("bare", csrf_exempt(BareView.as_view())),
    path("floor", csrf_exempt(FloorView.as_view())),
    path("healthz", csrf_exempt(BareView.as_view())),
]
