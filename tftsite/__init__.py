# Load the Celery app with Django so @shared_task and transaction.on_commit enqueues use it.
from tftsite.celery import app as celery_app

__all__ = ("celery_app",)
