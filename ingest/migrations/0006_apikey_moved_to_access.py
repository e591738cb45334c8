"""ApiKey now belongs to the access app (access 0001 took over the state; the table stays)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0005_record_day_counts"),
        ("access", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="ApiKey")], database_operations=[]),
    ]
