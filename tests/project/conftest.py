from .dev_site import dev_server  # noqa: F401  (the fixture, for the docs' tests)
