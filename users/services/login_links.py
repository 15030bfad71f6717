"""Single-use login links (placeholder interface; the real module lands with the login-link view)."""

from ..models import User


class LoginLinkRefused(ValueError):
    """No link can be made for this user (staff, inactive, or SITE_BASE_URL unset)."""


def login_url(user: User) -> str:
    raise LoginLinkRefused("login links are not built yet")
