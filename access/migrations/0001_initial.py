"""The ApiKey model moves from ingest to access without touching its table.

ingest 0003 created `ingest_apikey`; this migration only tells Django's state that the model now
belongs to `access` (keeping the table name), and moves the content type so the permissions that
groups and users already hold on API keys follow the model. ingest 0006 drops the model from
ingest's state after this one."""

from django.db import migrations, models


def content_type_to_access(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="ingest", model="apikey").update(app_label="access")


def content_type_to_ingest(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="access", model="apikey").update(app_label="ingest")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("ingest", "0005_record_day_counts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=64, unique=True)),
                        ("prefix", models.CharField(help_text="first characters, to recognise the key", max_length=12)),
                        ("key_hash", models.CharField(max_length=64, unique=True)),
                        ("can_feed", models.BooleanField(default=True, help_text="may POST /feed/data")),
                        ("can_read", models.BooleanField(default=True, help_text="may read predictions, alerts and status")),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("last_used_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={"verbose_name": "API key", "ordering": ["name"], "db_table": "ingest_apikey"},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_type_to_access, content_type_to_ingest),
    ]
