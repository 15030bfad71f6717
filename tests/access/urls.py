"""Views gated in every way users.access offers, beside the project's own URLs (login, admin, webhook)."""

from django.http import HttpResponse
from django.template import engines
from django.urls import path
from django.views import View
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.views import APIView

from users.access import HasTags, TagsRequiredMixin, has_tags, tags_required
from wpfusion_site.urls import urlpatterns as site_urlpatterns


def ok(request, *args, **kwargs):
    return HttpResponse("ok")


class VipView(TagsRequiredMixin, View):
    tags_any = ["VIP"]
    tags_none = ["Payment failed"]

    def get(self, request):
        return HttpResponse("mixin ok")


class RedirectingMixinView(TagsRequiredMixin, View):
    tags_all = ["VIP", "Gold"]
    tags_redirect_url = "/upgrade/"

    def get(self, request):
        return HttpResponse("mixin ok")


class VipApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [HasTags(any=["VIP"], none=["Payment failed"])]

    def get(self, request):
        return Response({"secret": "for VIPs"})


class ViewAttributesApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [HasTags]
    tags_all = ["Gold"]

    def get(self, request):
        return Response({"secret": "gold"})


TEMPLATE = engines["django"].from_string(
    "{% load access %}"
    '[filter:{% if request.user|has_tag:"vip" %}yes{% else %}no{% endif %}]'
    '[any:{% wpf any="VIP, Gold" not="Payment failed" %}in{% else %}out{% endwpf %}]'
    '[all:{% wpf all="VIP, Gold" %}both{% else %}not both{% endwpf %}]'
    '[tag:{% wpf tag="Gold" %}gold{% endwpf %}]'
    '[method:{% wpf tag="Gold, VIP" method="any" %}one{% else %}none{% endwpf %}]'
    "[var:{% wpf any=wanted %}var{% else %}no var{% endwpf %}]"
    '[not:{% wpf not="Payment failed" %}paid up{% else %}locked{% endwpf %}]'
)


def template_page(request):
    return HttpResponse(TEMPLATE.render({"wanted": [103]}, request))


def many_checks(request):
    results = [has_tags(request.user, any=["VIP", 102], none=["Payment failed"]) for _ in range(50)]
    results += [request.user.has_tag("vip") for _ in range(50)]
    return HttpResponse(f"{sum(results)}")


urlpatterns = [
    path("gated/any/", tags_required(any=["VIP", "Gold"])(ok)),
    path("gated/all/", tags_required(all=["vip", 102])(ok)),
    path("gated/none/", tags_required(none=["Payment failed"])(ok)),
    path("gated/redirect/", tags_required(any=["VIP"], redirect_url="/upgrade/")(ok)),
    path("gated/self-redirect/", tags_required(any=["VIP"], redirect_url="/gated/self-redirect/")(ok)),
    path("gated/staff/", tags_required(any=["VIP"], staff_pass=True)(ok)),
    path("gated/ambiguous/", tags_required(any=["Dup"])(ok)),
    path("mixin/", VipView.as_view()),
    path("mixin/redirect/", RedirectingMixinView.as_view()),
    path("api/vip/", VipApi.as_view()),
    path("api/gold/", ViewAttributesApi.as_view()),
    path("template/", template_page),
    path("many-checks/", many_checks),
    path("plain/", ok),
    path("page/", ok),
    path("page/sub/", ok),
    path("upgrade/", ok),
    path("locked/", ok),
    path("a/", ok),
    path("b/", ok),
    *site_urlpatterns,
]
