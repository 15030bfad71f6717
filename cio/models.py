from django.db import models


class RateLimitBucket(models.Model):
    """Shared state of the App API rate limiter: the grant times of the last `rate` requests, as a JSON list of
    epoch seconds. One row per limited API, shared by every web and worker process using the database."""

    name = models.CharField(max_length=64, unique=True)
    stamps = models.TextField(default="[]")

    def __str__(self):
        return self.name
