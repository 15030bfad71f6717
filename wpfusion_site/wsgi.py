import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wpfusion_site.settings")

_django = get_wsgi_application()

# After Django is set up: chunked request bodies and keep-alive after an unread body (see the module).
from webhooks.intake.framing import BodyFraming  # noqa: E402

application = BodyFraming(_django)
