"""The table of configuration versions that settings_app.freshness keeps.

Beside settings_app.models rather than in it: the models hold their per-process copies through freshness, so
freshness must not need the models module for its own table.
"""

from django.db import models


class ConfigVersion(models.Model):
    """The current version of one kind of configuration (see settings_app.freshness)."""

    kind = models.CharField(max_length=64, primary_key=True)
    version = models.CharField(max_length=32)

    def __str__(self):
        return f"{self.kind} {self.version}"
