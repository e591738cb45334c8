"""Every forecast stored before 0021 gets its peak ratio (engine.serving.peak_ratios of its summary),
so the fleet table is ordered by the database over one column, with no fallback to summaries."""

from django.db import migrations

BATCH = 2000


def _backfill(apps, schema_editor):
    from forecasting.engine.serving import peak_ratios  # numpy only: the rule that orders the table

    forecasts = apps.get_model("forecasting", "ServerForecast")
    while True:
        rows = list(forecasts.objects.filter(peak_ratio__isnull=True).values_list("pk", "summary")[:BATCH])
        if not rows:
            return
        for pk, summary in rows:
            forecasts.objects.filter(pk=pk).update(peak_ratio=peak_ratios(summary or {})[2])


class Migration(migrations.Migration):

    dependencies = [
        ("forecasting", "0021_serverforecast_peak_ratio"),
    ]

    operations = [
        migrations.RunPython(_backfill, migrations.RunPython.noop),
    ]
