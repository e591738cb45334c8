"""Give a request's database connection back as soon as its response is built.

Under ASGI (tftsite/asgi.py: a connection pool, CONN_MAX_AGE 0) Django closes a request's connection only when the
response has been sent, so a client reading a large body slowly would hold a PostgreSQL connection
for minutes (measured: 50 slow readers held 51 connections, bench/slow_readers.py), and enough of
them would exhaust max_connections and stop the feed. The body is complete once the view returns:
no query runs after that, so the connection is closed (back to the pool) here. Persistent connections (WSGI workers,
CONN_MAX_AGE > 0) and connections inside a transaction (tests) are left alone; streaming responses
too, since they may still read from the database.
"""

from django.db import connections


class ReleaseConnectionsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.streaming:
            for conn in connections.all(initialized_only=True):
                if conn.settings_dict.get("CONN_MAX_AGE") == 0 and not conn.in_atomic_block:
                    conn.close()
        return response
