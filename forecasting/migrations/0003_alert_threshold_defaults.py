from django.db import migrations

# The documented defaults (forecasting/alerts.py DEFAULT_THRESHOLDS), editable in the admin.
DEFAULTS = {
    "cpu_pct": (85.0, 95.0, False, 0.0),
    "mem_pct": (85.0, 95.0, False, 0.0),
    "disk_io_mb_s": (1.5, 2.0, True, 10.0),
    "latency_ms": (1.5, 2.0, True, 20.0),
}


def create_defaults(apps, schema_editor):
    AlertThreshold = apps.get_model("forecasting", "AlertThreshold")
    for metric, (warning, critical, relative, floor) in DEFAULTS.items():
        AlertThreshold.objects.get_or_create(
            metric=metric, defaults={"warning": warning, "critical": critical, "relative": relative, "floor": floor}
        )


class Migration(migrations.Migration):
    dependencies = [("forecasting", "0002_predictions")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
