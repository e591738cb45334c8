from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("forecasting", "0006_interval_calibration_state"),
    ]

    operations = [
        migrations.AddField(
            model_name="serverforecast",
            name="explanation",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
