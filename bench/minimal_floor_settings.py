"""bench/accept.py's minimal floor: the production settings (database and connection settings, apps, everything
else) with only SecurityMiddleware and CommonMiddleware, and bench/floor_urls.py as the only URLs. Issue 20's
reference: what a bare DRF view that commits one INSERT costs when no middleware work but these two is done. Never
part of the product: only the benchmark points gunicorn at it (DJANGO_SETTINGS_MODULE=bench.minimal_floor_settings).
"""

from wpfusion_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_urls"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
