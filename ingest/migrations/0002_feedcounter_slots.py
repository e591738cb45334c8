from django.db import migrations


def create_slots(apps, schema_editor):
    FeedCounter = apps.get_model("ingest", "FeedCounter")
    for slot in range(8):  # FeedCounter.SLOTS
        FeedCounter.objects.get_or_create(slot=slot)


class Migration(migrations.Migration):
    dependencies = [("ingest", "0001_initial")]

    operations = [migrations.RunPython(create_slots, migrations.RunPython.noop)]
