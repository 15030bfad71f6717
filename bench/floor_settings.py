"""bench/accept.py's full-settings floor: the production settings (middleware, database and connection settings,
everything) with bench/floor_urls.py as the only URLs. Never part of the product: only the benchmark points gunicorn
at it (DJANGO_SETTINGS_MODULE=bench.floor_settings). bench/minimal_floor_settings.py is the same with only Security
and Common middleware."""

from wpfusion_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_urls"
