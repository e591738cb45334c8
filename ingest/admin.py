from django.conf import settings
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.utils.functional import cached_property

from ingest.models import ApiKey, MetricBucket, MetricRecord, Server
from ingest.services import api_key_create, api_key_revoke


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Named keys. The key is generated on save and shown once; only its hash is stored."""

    list_display = ("name", "prefix", "can_feed", "can_read", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active", "can_feed", "can_read")
    fields = ("name", "can_feed", "can_read")
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # keys are created or revoked, never edited

    def save_model(self, request, obj, form, change):
        key, raw = api_key_create(name=obj.name, can_feed=obj.can_feed, can_read=obj.can_read)
        obj.pk = key.pk
        self.message_user(
            request, f"API key for {key.name}: {raw} — copy it now, it will not be shown again.", messages.WARNING
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        done = sum(api_key_revoke(key_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} keys revoked.")
