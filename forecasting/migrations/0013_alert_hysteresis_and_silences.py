# One open alert per server × metric (severity changes become AlertTransition rows), the hysteresis
# counters, and maintenance windows. Before the new constraint, each server × metric keeps only its
# most severe open alert (the others resolve), and open alerts take their severity as opened_severity.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _one_open_alert_per_server_metric(apps, schema_editor):
    from datetime import UTC, datetime

    alert_model = apps.get_model("forecasting", "Alert")
    now = datetime.now(UTC)
    kept: set[tuple[int, str]] = set()
    rank = {"critical": 0, "warning": 1}
    opened = alert_model.objects.filter(state__in=["active", "acknowledged"])
    for alert in sorted(opened, key=lambda a: (a.server_id, a.metric, rank.get(a.severity, 2), a.pk)):
        key = (alert.server_id, alert.metric)
        if key in kept:
            alert_model.objects.filter(pk=alert.pk).update(state="resolved", resolved_at=now, updated_at=now)
        else:
            kept.add(key)
            alert_model.objects.filter(pk=alert.pk).update(opened_severity=alert.severity)


class Migration(migrations.Migration):
    dependencies = [
        ("forecasting", "0012_relative_critical_3x"),
        ("ingest", "0006_apikey_moved_to_access"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AlertStreak",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("metric", models.CharField(max_length=32)),
                ("hits", models.PositiveIntegerField(default=0)),
                ("stepped_origin", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="AlertTransition",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("opened", "Opened"),
                            ("severity_changed", "Severity Changed"),
                            ("acknowledged", "Acknowledged"),
                            ("resolved", "Resolved"),
                            ("silenced", "Silenced"),
                        ],
                        max_length=20,
                    ),
                ),
                ("at", models.DateTimeField()),
                (
                    "severity",
                    models.CharField(choices=[("warning", "Warning"), ("critical", "Critical")], max_length=16),
                ),
                ("message", models.CharField(blank=True, max_length=300)),
            ],
            options={
                "ordering": ["at", "pk"],
            },
        ),
        migrations.CreateModel(
            name="MaintenanceWindow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "servers",
                    models.CharField(help_text="server names or globs, comma-separated (db-*, web01)", max_length=500),
                ),
                ("metric", models.CharField(blank=True, default="", help_text="empty: every metric", max_length=32)),
                ("starts_at", models.DateTimeField()),
                ("ends_at", models.DateTimeField()),
                ("reason", models.CharField(max_length=300)),
                ("created_by", models.CharField(help_text="the API key's or admin user's name", max_length=150)),
                ("created_at", models.DateTimeField()),
                ("ended_at", models.DateTimeField(blank=True, help_text="set when ended early", null=True)),
            ],
            options={
                "ordering": ["starts_at", "pk"],
            },
        ),
        migrations.RemoveConstraint(
            model_name="alert",
            name="one_open_alert_per_server_metric_severity",
        ),
        migrations.AddField(
            model_name="alert",
            name="misses",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="alert",
            name="flap",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="alert",
            name="stepped_origin",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="alert",
            name="opened_severity",
            field=models.CharField(
                blank=True, choices=[("warning", "Warning"), ("critical", "Critical")], default="", max_length=16
            ),
        ),
        migrations.RunPython(_one_open_alert_per_server_metric, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="alert",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state__in", ["active", "acknowledged"])),
                fields=("server", "metric"),
                name="one_open_alert_per_server_metric",
            ),
        ),
        migrations.AddField(
            model_name="alertstreak",
            name="server",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+", to="ingest.server"),
        ),
        migrations.AddField(
            model_name="alerttransition",
            name="alert",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="transitions", to="forecasting.alert"
            ),
        ),
        migrations.AddField(
            model_name="alerttransition",
            name="run",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="forecasting.predictionrun",
            ),
        ),
        migrations.AddIndex(
            model_name="maintenancewindow",
            index=models.Index(fields=["ends_at", "starts_at"], name="maintenance_window_span_idx"),
        ),
        migrations.AddConstraint(
            model_name="maintenancewindow",
            constraint=models.CheckConstraint(
                condition=models.Q(("ends_at__gt", models.F("starts_at"))), name="window_ends_after_start"
            ),
        ),
        migrations.AddConstraint(
            model_name="alertstreak",
            constraint=models.UniqueConstraint(fields=("server", "metric"), name="one_alert_streak_per_server_metric"),
        ),
        migrations.AddIndex(
            model_name="alerttransition",
            index=models.Index(fields=["alert", "at"], name="alert_transition_at_idx"),
        ),
    ]
