from django.db import models


class ApiKey(models.Model):
    """A named API key (one per feeder, say). Only a SHA-256 hash is stored; the key itself is
    shown once, when it is created in the admin."""

    name = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="first characters, to recognise the key")
    key_hash = models.CharField(max_length=64, unique=True)
    can_feed = models.BooleanField(default=True, help_text="may POST /feed/data")
    can_read = models.BooleanField(default=True, help_text="may read predictions, alerts and status")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table was created by ingest (migration 0003) before keys had their own app; the name
        # stays so moving the model cost no data migration (access 0001 / ingest 0006).
        db_table = "ingest_apikey"
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
