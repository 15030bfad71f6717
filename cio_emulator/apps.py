from django.apps import AppConfig


class CioEmulatorConfig(AppConfig):
    name = "cio_emulator"
    verbose_name = "Customer.io emulator (development, tests and benchmarks)"
