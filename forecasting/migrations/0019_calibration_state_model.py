from django.db import migrations, models

# Issue 24: an interval calibration state records the model version whose served intervals it was
# fitted on, so the first scoring pass after a model switch resets the old model's factors
# (scoring.calibration.intervals_recalibrate). States stored before this migration were fitted on the
# version active now (and the heuristic's counts, which no longer feed them): they are attributed to
# it, so an upgrade alone resets nothing.


def attribute_to_active_model(apps, schema_editor):
    ModelVersion = apps.get_model("forecasting", "ModelVersion")
    CalibrationState = apps.get_model("forecasting", "CalibrationState")
    active = ModelVersion.objects.filter(is_active=True, valid=True).values_list("name", flat=True).first()
    if active:
        CalibrationState.objects.update(model_name=active)


class Migration(migrations.Migration):

    dependencies = [
        ('forecasting', '0018_incident_history'),
    ]

    operations = [
        migrations.AddField(
            model_name='calibrationstate',
            name='model_name',
            field=models.CharField(blank=True, default='', help_text='the model version whose served intervals the factors were fitted on', max_length=128),
        ),
        migrations.RunPython(attribute_to_active_model, migrations.RunPython.noop),
    ]
