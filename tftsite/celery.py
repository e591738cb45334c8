"""The Celery app. Configuration comes from Django settings (namespace CELERY); the one beat
schedule is CELERY_BEAT_SCHEDULE in settings.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tftsite.settings")

app = Celery("tftsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
