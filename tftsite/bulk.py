"""Insert many model rows at once: COPY on PostgreSQL, bulk_create elsewhere.

Why not bulk_create on PostgreSQL: Django 5.2 sends a bulk insert as ``INSERT … SELECT * FROM
UNNEST(%s::text[], …)``, one array per column, bound client-side in text, and psycopg escapes every
quote of every element of a text array with a Python regular expression. A prediction chunk's
forecasts carry 8 kB of JSON each, so storing 500 of them ran 100,000 regex substitutions per chunk:
the write phase of a 1,000-server cycle spent about half its time escaping (issue 25's profile).
COPY sends each row in psycopg's C row formatter, no escaping in Python and no query to parse.

COPY cannot skip conflicting rows, so ``skip_existing`` names the unique key the caller would give
``ON CONFLICT DO NOTHING``: rows whose key is already stored are left out first (one indexed read),
and if a concurrent writer stores one of the others between that read and the COPY, the COPY is rolled
back to a savepoint and the rows go through ``bulk_create(ignore_conflicts=True)`` instead, so the
outcome is the same as ON CONFLICT DO NOTHING either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import JSONField, Model, Q

logger = logging.getLogger(__name__)


def _key(obj: Model, attnames: Sequence[str]) -> tuple:
    return tuple(getattr(obj, a) for a in attnames)


def _not_stored(model: type[Model], objs: list[Model], attnames: Sequence[str]) -> list[Model]:
    """The objects whose key (attnames) is not stored yet, and only the first of any key repeated in
    objs (as ON CONFLICT DO NOTHING would keep)."""
    values = {a: {getattr(o, a) for o in objs} for a in attnames}
    # A superset of the stored keys by one IN per key column (each column has few distinct values in a
    # batch: a chunk's servers, one or two origins, two windows), then the exact tuples here.
    stored = set(model.objects.filter(Q(**{f"{a}__in": v for a, v in values.items()})).values_list(*attnames))
    out = []
    for obj in objs:
        key = _key(obj, attnames)
        if key not in stored:
            stored.add(key)
            out.append(obj)
    return out


def _json_text(value: object) -> str | None:
    """A JSONField value (encoder None) as the JSON text COPY sends: orjson, 8 × faster than the
    json module Django's adapter calls (a chunk's forecasts carry three JSON columns each); numpy
    scalars and non-string keys as json gives them, NaN as null (json's NaN is refused by jsonb)."""
    if value is None:
        return None  # SQL NULL, as Django stores None in a JSONField
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()


def _copy(model: type[Model], objs: list[Model]) -> None:
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    as_json = [isinstance(f, JSONField) and f.encoder is None for f in fields]
    # Django does not wrap the driver's COPY: wrap_database_errors turns its errors into Django's.
    with connection.wrap_database_errors, connection.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for obj in objs:
            copy.write_row([_json_text(getattr(obj, f.attname)) if j else f.get_db_prep_save(getattr(obj, f.attname), connection)
                            for f, j in zip(fields, as_json, strict=True)])  # fmt: skip


def objects_insert(*, model: type[Model], objs: list[Model], skip_existing: Sequence[str] = ()) -> int:
    """Store objs (unsaved instances of model; their primary keys are not set afterwards). With
    skip_existing (the attnames of a unique key), a row whose key is stored already is skipped, as
    ON CONFLICT DO NOTHING. Returns how many rows were sent to be stored."""
    if not objs:
        return 0
    if skip_existing:  # on every database, so the count returned means the same everywhere
        objs = _not_stored(model, objs, skip_existing)
        if not objs:
            return 0
    if connection.vendor != "postgresql":
        # A savepoint as around the COPY: a conflict raised here leaves the caller's transaction usable.
        with transaction.atomic():
            model.objects.bulk_create(objs, ignore_conflicts=bool(skip_existing), batch_size=500)
        return len(objs)
    try:
        with transaction.atomic():  # a savepoint inside the caller's transaction
            _copy(model, objs)
    except IntegrityError:
        if not skip_existing:
            raise
        # A concurrent writer stored one of these keys after _not_stored read them.
        logger.info("copy met a concurrent insert; storing with ON CONFLICT DO NOTHING",
                    extra={"table": model._meta.db_table, "rows": len(objs)})  # fmt: skip
        model.objects.bulk_create(objs, ignore_conflicts=True, batch_size=500)
    return len(objs)
