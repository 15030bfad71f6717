from django.urls import path

from . import views

urlpatterns = [
    path("members/", views.members, name="demo-members"),
    path("members/start/", views.start_course, name="demo-start"),
    path("vip/", views.vip, name="demo-vip"),
    path("payment-failed/", views.payment_failed, name="demo-payment-failed"),
]
