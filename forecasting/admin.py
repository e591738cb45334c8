from datetime import UTC, datetime

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.utils.html import format_html, format_html_join

from forecasting.alerts.selectors import alert_notification_status
from forecasting.alerts.services import alert_acknowledge, alert_resolve
from forecasting.alerts.silences import maintenance_window_create, maintenance_window_end
from forecasting.lifecycle import services as training_services
from forecasting.models import (
    Alert,
    AlertNotification,
    AlertThreshold,
    AlertTransition,
    MaintenanceWindow,
    ModelVersion,
    PredictionRun,
    ServerForecast,
    TrainingRun,
)
from forecasting.registry import model_version_activate, model_version_importance
from ingest.admin import ReadOnlyAdmin


def _may(request, action: str, model) -> bool:
    """The user holds `action` (add/change/…) on `model`. The admin actions below change rows that
    the read-only admins never edit through a form, so each one names the permission it needs."""
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "is_active", "activated_by_operator", "valid", "created_at", "val_loss", "error")
    list_filter = ("is_active", "valid")
    readonly_fields = ("name", "path", "created_at", "registered_at", "variable_importance", "metrics", "spec",
                       "is_active", "activated_by_operator", "valid", "error")
    # activate doubles as roll back (pick the previous version); train and compare queue a
    # training run on the training worker (the web process never trains or imports torch)
    actions = ["activate", "train_now", "compare"]

    @admin.display(description="variable importance")
    def variable_importance(self, obj):
        # The model's global importance (importance.json, from its validation windows at training
        # time): the fleet-wide view of what the network weighs.
        importance = model_version_importance(version=obj)
        if importance is None:
            return "— (this model folder has no importance.json: trained before it was recorded)"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((group, v["name"], f"{v['weight']:.3f}") for group, items in importance["variables"].items()
             for v in items),
        )
        att = importance["attention"]
        return format_html(
            '<table id="variable-importance"><tr><th>group</th><th>input</th><th>weight</th></tr>{}</table>'
            "<p>{} validation windows; attention: last hour {}, same time yesterday {}, rest {}</p>",
            rows, importance["windows"], att["last_hour"], att["same_time_yesterday"], att["rest"],
        )

    @admin.display(description="val loss")
    def val_loss(self, obj):
        # The headline training metric in the list; the full metrics are on the detail page.
        value = (obj.metrics or {}).get("val_loss")
        return f"{value:.4f}" if isinstance(value, int | float) else "—"

    def has_activate_permission(self, request):
        return _may(request, "change", ModelVersion)

    def has_train_permission(self, request):
        return _may(request, "add", TrainingRun)  # train and compare queue a new training run

    @admin.action(description="Activate the selected model (one)", permissions=["activate"])
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

    @admin.action(description="Train a challenger now (fleet data, champion/challenger decision)",
                  permissions=["train"])
    def train_now(self, request, queryset):
        run = training_services.training_run_request(trigger="admin")
        self._queued(request, run)

    @admin.action(description="Compare the selected model (one) with the active model on the held-back days",
                  permissions=["train"])
    def compare(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version.", messages.ERROR)
            return
        run = training_services.training_run_request(
            trigger="admin", kind=TrainingRun.Kind.COMPARE, challenger_id=queryset.get().pk
        )
        self._queued(request, run)

    def _queued(self, request, run):
        if run is None:
            self.message_user(request, "A training run is already running.", messages.WARNING)
        else:
            self.message_user(request, f"Training run {run.pk} queued (see Training runs).")


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "status", "decision", "started_at", "finished_at", "epoch", "best_val_loss",
                    "champion", "challenger", "reason")
    list_filter = ("kind", "status", "decision")
    readonly_fields = [f.name for f in TrainingRun._meta.fields]
    list_select_related = ("champion", "challenger")

    @admin.display(description="epoch")
    def epoch(self, obj):
        p = obj.progress or {}
        return f"{p['epoch']}/{p.get('epochs', '?')}" if "epoch" in p else p.get("phase", "—")

    @admin.display(description="best val loss")
    def best_val_loss(self, obj):
        value = (obj.progress or {}).get("best_val_loss")
        return f"{value:.4f}" if isinstance(value, int | float) else "—"


@admin.register(PredictionRun)
class PredictionRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "status", "started_at", "duration_seconds", "servers", "forecasted", "tft_count",
                    "fallback_count", "model_name", "device", "error")
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


class AlertTransitionInline(admin.TabularInline):
    model = AlertTransition
    fields = ("at", "kind", "severity", "run", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    inlines = [AlertTransitionInline]
    list_display = ("server", "metric", "severity", "state", "predicted_value", "threshold", "minutes_ahead",
                    "opened_at", "updated_at", "acknowledged_by")
    # Only servers that have alerts appear in the server filter (not the whole fleet).
    list_filter = ("severity", "state", "metric", ("server", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("server", "acknowledged_by")
    search_fields = ("server__name", "message")
    raw_id_fields = ("server",)
    actions = ["acknowledge", "resolve"]
    readonly_fields = [f.name for f in Alert._meta.fields]

    def has_transition_permission(self, request):
        # Acknowledging or resolving changes the alert (and a resolve is pushed to Alertmanager).
        return _may(request, "change", Alert)

    @admin.action(description="Acknowledge the selected alerts", permissions=["transition"])
    def acknowledge(self, request, queryset):
        done = sum(alert_acknowledge(alert_id=pk, user=request.user) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} alerts acknowledged.")

    @admin.action(description="Resolve the selected alerts", permissions=["transition"])
    def resolve(self, request, queryset):
        done = sum(alert_resolve(alert_id=pk, user=request.user) for pk in queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} alerts resolved.")


@admin.register(AlertNotification)
class AlertNotificationAdmin(ReadOnlyAdmin):
    """The push outbox, read-only: each transition's message and where its delivery stands (a
    superseded one was overtaken by a later message of the same alert and never sent)."""

    list_display = ("id", "alert", "transition", "created_at", "push_status", "attempts", "delivered_at",
                    "superseded_by", "last_error")
    list_filter = ("transition", ("delivered_at", admin.EmptyFieldListFilter),
                   ("superseded_at", admin.EmptyFieldListFilter))
    list_select_related = ("alert",)
    search_fields = ("alert__server__name",)
    raw_id_fields = ("alert", "alert_transition", "superseded_by")
    show_full_result_count = False

    @admin.display(description="status")
    def push_status(self, obj):
        return alert_notification_status(notification=obj)


@admin.register(AlertThreshold)
class AlertThresholdAdmin(admin.ModelAdmin):
    list_display = ("metric", "warning", "critical", "relative", "floor")


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(admin.ModelAdmin):
    """Windows are added here or through the API and ended early by the action; they are not edited
    (what was silenced, and why, stays on record). Adding needs the add permission, ending the change
    permission, deleting the delete permission."""

    list_display = ("servers", "metric", "starts_at", "ends_at", "ended_at", "reason", "created_by")
    list_filter = ("metric",)
    search_fields = ("servers", "reason", "created_by")
    fields = ("servers", "metric", "starts_at", "ends_at", "reason")
    actions = ["end_now"]

    def get_readonly_fields(self, request, obj=None):
        return ("servers", "metric", "starts_at", "ends_at", "reason", "created_by", "created_at", "ended_at") if obj else ()

    def get_fields(self, request, obj=None):
        return (*self.fields, "created_by", "created_at", "ended_at") if obj else self.fields

    def has_change_permission(self, request, obj=None):
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_end_permission(self, request):
        return request.user.has_perm("forecasting.change_maintenancewindow")

    def save_model(self, request, obj, form, change):
        if change:  # never reached: windows are not edited
            return
        window = maintenance_window_create(
            **{f: form.cleaned_data[f] for f in ("servers", "metric", "starts_at", "ends_at", "reason")},
            created_by=request.user.get_username(), now=datetime.now(UTC),
        )
        obj.pk = window.pk

    @admin.action(description="End the selected windows now", permissions=["end"])
    def end_now(self, request, queryset):
        now = datetime.now(UTC)
        ended = [maintenance_window_end(window_id=pk, now=now) for pk in queryset.values_list("pk", flat=True)]
        self.message_user(request, f"{sum(1 for w in ended if w is not None and w.ended_at == now)} windows ended.")
