from django.db import models

from forecasting.engine.series import dominant_state  # the one rule, shared with the model
from ingest.contract import PROFILE_LABELS, PROFILES, SERVER_NAME_MAX_LENGTH, STATE_SEVERITY, STATES


class Server(models.Model):
    name = models.CharField(max_length=SERVER_NAME_MAX_LENGTH, unique=True)
    profile = models.CharField(max_length=16, choices=[(p, PROFILE_LABELS[p]) for p in PROFILES])
    # Metric time (the records' own timestamps), not arrival time.
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_received_at = models.DateTimeField()
    # Raw records held for this server; kept exact by ingest and prune in their transactions.
    record_count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MetricRecord(models.Model):
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="records")
    timestamp = models.DateTimeField()
    cpu_pct = models.FloatField()
    mem_pct = models.FloatField()
    disk_io_mb_s = models.FloatField()
    latency_ms = models.FloatField()
    state = models.CharField(max_length=16, choices=[(s, s) for s in STATES])
    received_at = models.DateTimeField()

    class Meta:
        # The unique index (server, timestamp) is also the "latest N per server" index: a
        # backward scan of it per server serves ORDER BY timestamp DESC LIMIT N.
        constraints = [models.UniqueConstraint(fields=["server", "timestamp"], name="uniq_record_server_ts")]
        indexes = [models.Index(fields=["timestamp"], name="record_ts_idx")]  # retention prune

    def __str__(self) -> str:
        return f"{self.server_id}@{self.timestamp.isoformat()}"


class MetricBucket(models.Model):
    """A 5-minute (TFT_STEP_MINUTES) rollup of one server's records.

    Sums, maxima and per-state counts only ever grow by addition, so concurrent ingests keep them
    exact with one atomic upsert. Means, the dominant and the worst state derive from them.
    """

    # No index of its own: uniq_bucket_server_start leads with server (migration 0007).
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="buckets", db_index=False)
    bucket_start = models.DateTimeField()
    count = models.IntegerField(default=0)
    cpu_pct_sum = models.FloatField(default=0.0)
    cpu_pct_max = models.FloatField(default=0.0)
    mem_pct_sum = models.FloatField(default=0.0)
    mem_pct_max = models.FloatField(default=0.0)
    disk_io_mb_s_sum = models.FloatField(default=0.0)
    disk_io_mb_s_max = models.FloatField(default=0.0)
    latency_ms_sum = models.FloatField(default=0.0)
    latency_ms_max = models.FloatField(default=0.0)
    n_idle = models.IntegerField(default=0)
    n_healthy = models.IntegerField(default=0)
    n_morning_spike = models.IntegerField(default=0)
    n_maintenance = models.IntegerField(default=0)
    n_heavy_load = models.IntegerField(default=0)
    n_recovery = models.IntegerField(default=0)
    n_offline = models.IntegerField(default=0)
    n_critical_issue = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "bucket_start"], name="uniq_bucket_server_start")]
        indexes = [models.Index(fields=["bucket_start"], name="bucket_start_idx")]

    def __str__(self) -> str:
        return f"{self.server_id}@{self.bucket_start.isoformat()}"

    def mean(self, metric: str) -> float:
        return getattr(self, f"{metric}_sum") / self.count if self.count else 0.0

    @property
    def state_counts(self) -> dict[str, int]:
        return {state: getattr(self, f"n_{state}") for state in STATES}

    @property
    def dominant_state(self) -> str:
        return dominant_state(self.state_counts)

    @property
    def worst_state(self) -> str:
        return worst_state(self.state_counts)


def worst_state(counts: dict[str, int]) -> str:
    seen = [s for s in STATES if counts.get(s, 0) > 0]
    return max(seen, key=STATE_SEVERITY.__getitem__) if seen else "healthy"


class FeedCounter(models.Model):
    """Accepted batches and held records, spread over a few slots.

    One counter row would serialise every feed transaction on its row lock; a batch updates one
    slot and readers sum them.
    """

    SLOTS = 8

    slot = models.PositiveSmallIntegerField(primary_key=True)
    batches = models.BigIntegerField(default=0)
    records = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"slot {self.slot}: {self.batches} batches, {self.records} records"
