"""Issue 22: the relative limits' defaults moved from warning 1.5 × / critical 2 × the server's own p95
to 2 × / 3 × (engine.spec.DEFAULT_THRESHOLDS; 2 × p95 for two buckets was reached in 42 % of 8-hour
windows of real disk series: bursts, not incidents). Migration 0003 stored the old defaults as rows,
and rows win over the engine's defaults (alerts.selectors.alert_thresholds), so without this the
new definition never reached a database. Only rows still at the old defaults move: a limit an
operator set in the admin stays."""

from django.db import migrations

OLD = {"disk_io_mb_s": (1.5, 2.0, True, 10.0), "latency_ms": (1.5, 2.0, True, 20.0)}
NEW = {"disk_io_mb_s": (2.0, 3.0, True, 10.0), "latency_ms": (2.0, 3.0, True, 20.0)}


def _move(apps, source: dict, target: dict) -> None:
    AlertThreshold = apps.get_model("forecasting", "AlertThreshold")
    for metric, (warning, critical, relative, floor) in source.items():
        new_warning, new_critical, _, _ = target[metric]
        AlertThreshold.objects.filter(metric=metric, warning=warning, critical=critical, relative=relative,
                                      floor=floor).update(warning=new_warning, critical=new_critical)  # fmt: skip


def forwards(apps, schema_editor):
    _move(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _move(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("forecasting", "0011_probability_outcomes")]

    operations = [migrations.RunPython(forwards, backwards)]
