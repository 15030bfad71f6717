"""Pages for the site's own people (the admin is for staff)."""

from django.contrib.auth.decorators import login_required
from django.template.response import TemplateResponse

from .access import never_locked, user_tags


@never_locked  # where every login without ?next= lands: no access rule may turn a fresh login into a refusal
@login_required
def account(request):
    """The person's profile, their tags and the way to change their password; staff see the same page."""
    tags = sorted(user_tags(request.user).values(), key=lambda tag: (str(tag).casefold(), tag.segment_id))
    response = TemplateResponse(request, "users/account.html", {"tags": tags, "title": "Your account"})
    # It shows one person's data: no shared cache may keep it.
    response["Cache-Control"] = "private"
    return response
