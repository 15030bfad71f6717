"""The Customer.io wire: the one client that talks to Customer.io's App and Track APIs (emulator: cio_emulator)."""


def get_client():
    """The Customer.io client configured from settings (see cio.client)."""
    from .client import get_client as configured_client

    return configured_client()
