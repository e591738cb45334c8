from django.db import models

from ingest.models import SERVER_NAME_MAX_LENGTH


class PendingRecord(models.Model):
    """A record some of whose metrics have arrived and the rest not yet.

    remote_write spreads a scrape's series over parallel shards, so the four metrics of one server
    and instant may come in different requests. The pieces wait here (committed with the request
    that brought them, so a 2xx never loses a sample) until the record is complete, or until
    TFT_PROTOCOL_WAIT_SECONDS have passed and it is stored from the last known values or dropped.
    """

    server_name = models.CharField(max_length=SERVER_NAME_MAX_LENGTH)
    ts_ms = models.BigIntegerField(help_text="the record's timestamp, Unix milliseconds (aligned)")
    cpu_pct = models.FloatField(null=True)
    mem_pct = models.FloatField(null=True)
    disk_io_mb_s = models.FloatField(null=True)
    latency_ms = models.FloatField(null=True)
    state = models.CharField(max_length=16, null=True)  # noqa: DJ001 -- NULL: no state sample yet ("" is not a state)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server_name", "ts_ms"], name="uniq_pending_server_ts")]

    def __str__(self) -> str:
        return f"{self.server_name}@{self.ts_ms}"
