"""The far horizon band is named "2-8h" everywhere (engine.spec.HORIZON_BANDS, the one definition;
the backtest's per-band keys); stored score and calibration rows named "2h-8h" follow."""

from django.db import migrations, models

OLD, NEW = "2h-8h", "2-8h"


def _rename(apps, old: str, new: str) -> None:
    for model in ("ForecastScore", "CalibrationState"):
        apps.get_model("forecasting", model).objects.filter(band=old).update(band=new)


def forwards(apps, schema_editor):
    _rename(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _rename(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("forecasting", "0009_calibration_states_as_band_corrections")]

    operations = [
        migrations.AlterField(
            model_name="calibrationstate",
            name="band",
            field=models.CharField(help_text="engine.spec.BAND_NAMES", max_length=16),
        ),
        migrations.RunPython(forwards, backwards),
    ]
