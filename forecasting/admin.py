from django.contrib import admin, messages

from forecasting.models import Alert, AlertThreshold, ModelVersion, PredictionRun, ServerForecast
from forecasting.registry import model_version_activate
from forecasting.alert_services import alert_acknowledge, alert_resolve
from ingest.admin import ReadOnlyAdmin


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "is_active", "activated_by_operator", "valid", "created_at", "val_loss", "error")
    list_filter = ("is_active", "valid")
    readonly_fields = ("name", "path", "created_at", "registered_at", "metrics", "spec", "is_active",
                       "activated_by_operator", "valid", "error")
    actions = ["activate"]

    @admin.display(description="val loss")
    def val_loss(self, obj):
        # The headline training metric in the list; the full metrics are on the detail page.
        value = (obj.metrics or {}).get("val_loss")
        return f"{value:.4f}" if isinstance(value, int | float) else "—"

    @admin.action(description="Activate the selected model (one)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version.", messages.ERROR)
            return
        try:
            version = model_version_activate(version_id=queryset.get().pk)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"{version.name} is now the active model.")


@admin.register(PredictionRun)
class PredictionRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "status", "started_at", "duration_seconds", "servers", "tft_count", "fallback_count",
                    "model_name", "device", "error")
    list_filter = ("status", "device")
    readonly_fields = [f.name for f in PredictionRun._meta.fields]
    show_full_result_count = False


@admin.register(ServerForecast)
class ServerForecastAdmin(ReadOnlyAdmin):
    list_display = ("server", "run", "method", "prob_30m", "prob_8h", "origin", "fallback_reason")
    list_filter = ("method",)
    list_select_related = ("server", "run")
    raw_id_fields = ("server", "run")
    search_fields = ("server__name",)
    exclude = ("payload",)
    readonly_fields = ("server", "run", "method", "fallback_reason", "origin", "encoder_steps", "prob_30m",
                       "prob_8h", "state", "summary", "alert_candidates")
    show_full_result_count = False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("server", "metric", "severity", "state", "predicted_value", "threshold", "minutes_ahead",
                    "opened_at", "updated_at", "acknowledged_by")
    # Only servers that have alerts appear in the server filter (not the whole fleet).
    list_filter = ("severity", "state", "metric", ("server", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("server", "acknowledged_by")
    search_fields = ("server__name", "message")
    raw_id_fields = ("server",)
    actions = ["acknowledge", "resolve"]
    readonly_fields = [f.name for f in Alert._meta.fields]

    @admin.action(description="Acknowledge the selected alerts")
    def acknowledge(self, request, queryset):
        done = sum(alert_acknowledge(alert_id=pk, user=request.user) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} alerts acknowledged.")

    @admin.action(description="Resolve the selected alerts")
    def resolve(self, request, queryset):
        done = sum(alert_resolve(alert_id=pk, user=request.user) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} alerts resolved.")


@admin.register(AlertThreshold)
class AlertThresholdAdmin(admin.ModelAdmin):
    list_display = ("metric", "warning", "critical", "relative", "floor")
