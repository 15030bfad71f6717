"""The two views bench/accept.py measures the webhook against (served by bench/floor_settings.py only).

- /bare: a DRF POST view that parses the JSON body and answers; no database.
- /floor: the same, plus what durability costs at the least: one INSERT into a table of its own (bench_floor,
  created by the benchmark), committed before the answer, on the site's own database connection settings.
- /plain-floor: the floor as a plain Django view (no DRF), as the webhook view is: shown beside the DRF floor (the
  issue's reference) so that the ratio without DRF's share is in plain sight too.
"""

import json

from django.db import connection
from django.http import HttpResponse
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


@csrf_exempt
def plain_floor(request):
    data = json.loads(request.body)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_floor (received_at, body) VALUES (%s, %s)",
            [timezone.now(), request.body.decode("utf-8", "replace")],
        )
    return HttpResponse(json.dumps({"status": "ok", "fields": len(data)}), content_type="application/json")


urlpatterns = [
    path("bare", csrf_exempt(BareView.as_view())),
    path("floor", csrf_exempt(FloorView.as_view())),
    path("plain-floor", plain_floor),
    path("healthz", csrf_exempt(BareView.as_view())),
]
