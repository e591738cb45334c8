"""Benchmarks for tftsite (issue 6) and the soak of issue 7: ``python -m bench [section]``.

Sections: ingest, predict, read, memory, soak; ``all`` (the default) runs every section but the
soak. Each starts what it needs on loopback (a dedicated Postgres database, Redis DB 14, gunicorn,
a Celery worker for the soak), runs bounded loads, prints one table and writes
``bench/results/<name>.json``.
"""
