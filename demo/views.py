"""The demo's pages, each showing one way of gating by tags (see the quick tour in docs/index.md)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from users.access import apply_tags, tags_required

# Names of the demo fixture's segments (cio_emulator's demo.json).
ACTIVE_CUSTOMERS = "Active customers"
STARTED_COURSE = "Started the course"


@tags_required(any=[ACTIVE_CUSTOMERS])
def members(request):
    """Open to "Active customers" (a decorator in code). The lockout for "Payment failed" is an access rule
    (admin → Access rules), which applies before this view runs."""
    return render(request, "demo/members.html")


@tags_required(any=[ACTIVE_CUSTOMERS])
def start_course(request):
    """Visiting applies a manual-segment tag: the site has it at once, Customer.io through the worker."""
    change = apply_tags(request.user, STARTED_COURSE)
    return render(request, "demo/start.html", {"newly_applied": bool(change.applied)})


@login_required
def vip(request):
    """One page, two audiences: the {% wpf %} block tag decides what each sees."""
    return render(request, "demo/vip.html")


def payment_failed(request):
    return render(request, "demo/payment_failed.html")
