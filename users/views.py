"""Pages for the site's own people (the admin is for staff)."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.template.response import TemplateResponse

from .access import never_locked, user_tags
from .tracking import track_if_enabled


@never_locked  # where every login without ?next= lands: no access rule may turn a fresh login into a refusal
@login_required
def account(request):
    """The person's profile, their tags and the way to change their password; staff see the same page."""
    tags = sorted(user_tags(request.user).values(), key=lambda tag: (str(tag).casefold(), tag.segment_id))
    response = TemplateResponse(request, "users/account.html", {"tags": tags, "title": "Your account"})
    # It shows one person's data: no shared cache may keep it.
    response["Cache-Control"] = "private"
    return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's set-a-new-password page (reset emails and welcome emails link to it), which also tells Customer.io
    of the reset when the password_reset event is on."""

    def form_valid(self, form):
        response = super().form_valid(form)
        track_if_enabled("event_password_reset", form.user, "password_reset")
        return response
