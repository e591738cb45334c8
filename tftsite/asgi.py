import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tftsite.settings")
# Under ASGI every request runs in its own context, with its own database connection: a persistent
# one (CONN_MAX_AGE) would be left behind by each request until PostgreSQL runs out of connections
# (measured: "too many clients" within seconds, bench/slow_readers.py). A pool per process instead
# (PostgreSQL only; settings.py), at most this many connections per worker process.
os.environ.setdefault("TFT_DB_POOL_SIZE", "8")
application = get_asgi_application()
