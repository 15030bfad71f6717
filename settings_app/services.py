from django.conf import settings


def site_base_url() -> str:
    """The public base URL for links and webhook URLs (SITE_BASE_URL; the development server's without it)."""
    return (settings.SITE_BASE_URL or "http://127.0.0.1:8000").rstrip("/")
