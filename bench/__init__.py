"""Benchmarks for tftsite (issue 6) and the soak of issue 7: ``python -m bench [section]``.

Sections: ingest, predict, read, memory, soak; ``all`` (the default) runs every section but the
soak. Each starts what it needs on loopback (a dedicated Postgres database, Redis DB 14, gunicorn,
a Celery worker for the soak), runs bounded loads, prints one table and writes
``bench/results/<name>.json``.

Issue 17 (scale): ``python -m bench storage`` (growth curve, prune of a day per rollup index,
row sizes), ``python -m bench.workers`` (the 10,000-server cycle over 1 and 2 Celery workers,
``GET /predictions/current`` at 1,000 and 10,000), ``python -m bench.regression OLD_TREE``
(read phase and cycle of this tree against an older commit on the same rows) and
``python -m bench.ingest_regression OLD_TREE`` (the ingest statement's cost per 1,000-record
batch, this tree against an older one).
"""
