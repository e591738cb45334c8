from django.conf import settings
from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from ingest.models import MetricBucket, MetricRecord, Server


class EstimatedCountPaginator(Paginator):
    """Never COUNT(*) a table of millions of rows for a page number: use the planner's estimate."""

    @cached_property
    def count(self):
        query = self.object_list.query
        if not query.where and self.object_list.db == "default":
            from django.db import connection

            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE relname = %s",
                        [self.object_list.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                    if row and row[0] > 10_000:
                        return row[0]
        return super().count


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ("name", "profile", "record_count", "ready", "first_seen", "last_seen", "last_received_at")
    list_filter = ("profile",)
    search_fields = ("name",)
    readonly_fields = ("first_seen", "last_seen", "last_received_at", "record_count")
    ordering = ("name",)

    @admin.display(boolean=True, description="ready")
    def ready(self, obj):
        return obj.record_count >= settings.TFT_WARMUP_RECORDS


@admin.register(MetricRecord)
class MetricRecordAdmin(ReadOnlyAdmin):
    list_display = ("server", "timestamp", "cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms", "state", "received_at")
    list_filter = ("state",)
    list_select_related = ("server",)
    raw_id_fields = ("server",)
    search_fields = ("server__name",)
    date_hierarchy = "timestamp"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-timestamp",)


@admin.register(MetricBucket)
class MetricBucketAdmin(ReadOnlyAdmin):
    list_display = ("server", "bucket_start", "count", "cpu_mean", "mem_mean", "dominant_state", "worst_state")
    list_select_related = ("server",)
    raw_id_fields = ("server",)
    search_fields = ("server__name",)
    date_hierarchy = "bucket_start"
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-bucket_start",)

    @admin.display(description="cpu mean")
    def cpu_mean(self, obj):
        return round(obj.mean("cpu_pct"), 2)

    @admin.display(description="mem mean")
    def mem_mean(self, obj):
        return round(obj.mean("mem_pct"), 2)
