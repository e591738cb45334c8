"""Section 1: POST /feed/data throughput and latency, and the raw database ceiling (COPY, INSERT)."""

from __future__ import annotations

import io
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

from bench.common import API_KEY, PY, ROOT, pg_bench_dsn, summary
from bench.loadgen import STATES, feed_bodies

FEED_SERVERS = [f"feed{i:03d}" for i in range(20)]  # generic profile, 20 servers like the contract's fleet


class TimeCursor:
    """Hands out disjoint timestamp ranges (1 s apart) so no record of the run repeats another."""

    def __init__(self, start: datetime):
        self.t = start.timestamp()

    def take(self, n_timestamps: int) -> float:
        t0 = self.t
        self.t += n_timestamps + 10
        return t0


def loadgen_measured(spec: dict, web_pids: list[int] | None) -> dict:
    """loadgen, plus the CPU the web workers and their Postgres backends spent per request."""
    from bench.common import bench_backend_pids, cpu_delta, cpu_seconds

    if not web_pids:
        return loadgen(spec)
    web0, pg0 = cpu_seconds(web_pids), cpu_seconds(bench_backend_pids())
    result = loadgen(spec)
    web1, pg1 = cpu_seconds(web_pids), cpu_seconds(bench_backend_pids())
    if result["requests"]:
        result["web_cpu_ms_per_req"] = round(cpu_delta(web0, web1) * 1000 / result["requests"], 2)
        result["pg_cpu_ms_per_req"] = round(cpu_delta(pg0, pg1) * 1000 / result["requests"], 2)
    return result


def loadgen(spec: dict, timeout: float = 600) -> dict:
    done = subprocess.run([PY, "-m", "bench.loadgen", json.dumps(spec)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _feed_spec(base: str, cursor: TimeCursor, *, batch: int, count: int, fleets: int = 1, **extra) -> dict:
    n_ts = -(-batch * count // len(FEED_SERVERS))  # an upper bound for every fleet
    return {"mode": "feed", "base": base, "api_key": API_KEY, "servers": FEED_SERVERS, "batch": batch,
            "count": count, "fleets": fleets, "t0": cursor.take(n_ts), "step": 1.0, **extra}


def _agg(runs: list[dict]) -> dict:
    keys = ("rps", "records_per_s", "p50_ms", "p99_ms", "client_cpu_share", "web_cpu_ms_per_req", "pg_cpu_ms_per_req")
    out = {k: summary([r.get(k) for r in runs], 1 if k in ("rps", "records_per_s", "p50_ms", "p99_ms") else 2)
           for k in keys}
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    out["error_samples"] = [s for r in runs for s in r["error_samples"]][:3]
    out["bodies_exhausted"] = any(r["bodies_exhausted"] for r in runs)
    return out


def run_http(base: str, *, reps: int, duration: float, log, web_pids: list[int] | None = None) -> dict:
    cursor = TimeCursor(datetime.now(UTC) - timedelta(days=12))
    out = {}
    log("ingest: warm-up")
    loadgen(_feed_spec(base, cursor, batch=20, count=300, connections=8, duration=1.0))
    # Throughput: bodies rotate over 24 fleets of 20 servers (many feeders), so concurrent requests
    # do not queue on the same server and bucket rows; "batch20_onefleet" is the contract's single
    # 20-server fleet sent back to back from the same connections (row-lock bound).
    scenarios = [
        ("batch20", 20, 12, int(3000 * duration), 24),
        ("batch1000", 1000, 6, int(150 * duration), 24),
        ("batch20_onefleet", 20, 12, int(3000 * duration), 1),
    ]
    for name, batch, connections, cap, fleets in scenarios:
        runs = []
        for rep in range(reps):
            r = loadgen_measured(_feed_spec(base, cursor, batch=batch, count=cap, connections=connections,
                                            duration=duration, fleets=fleets), web_pids)
            log(f"ingest {name} rep {rep + 1}: {r['rps']} req/s, {r['records_per_s']} rec/s, "
                f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}; CPU per request: client "
                f"{r['client_cpu_s'] * 1000 / max(1, r['requests']):.2f} ms, web {r.get('web_cpu_ms_per_req')} ms, "
                f"postgres {r.get('pg_cpu_ms_per_req')} ms")
            runs.append(r)
        out[name] = {"connections": connections, "fleets": fleets, **_agg(runs)}
    steady_s = max(10.0, 2 * duration)
    runs = []
    for rep in range(reps):
        r = loadgen(_feed_spec(base, cursor, batch=20, count=int(100 * steady_s), rate=100, duration=steady_s))
        log(f"ingest steady 100 req/s rep {rep + 1}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}")
        runs.append(r)
    out["steady100"] = {"rate": 100, "seconds": steady_s, **_agg(runs)}
    return out


def run_inprocess(*, reps: int, log) -> dict:
    """Where a 1,000-record request's server time goes, without HTTP: parse, validate, store."""
    from django.db import connection

    from ingest.services import records_ingest
    from ingest.validation import validate_feed_body

    cursor = TimeCursor(datetime.now(UTC) - timedelta(days=13, hours=12))
    bodies = feed_bodies(servers=[f"inproc{i:03d}" for i in range(20)], batch=1000, t0=cursor.take(60 * reps * 10),
                         step=1.0, count=10 * reps)
    parse, validate, store = [], [], []
    for body in bodies:
        t0 = time.perf_counter()
        data = json.loads(body)
        t1 = time.perf_counter()
        records = validate_feed_body(data, max_records=10_000, max_future=timedelta(minutes=5))
        t2 = time.perf_counter()
        result = records_ingest(records=records)
        t3 = time.perf_counter()
        assert result.accepted == 1000, result
        parse.append((t1 - t0) * 1000)
        validate.append((t2 - t1) * 1000)
        store.append((t3 - t2) * 1000)
    connection.close()
    res = {"parse_ms": summary(parse[1:], 2), "validate_ms": summary(validate[1:], 2), "store_ms": summary(store[1:], 2)}
    for k in res:
        res[k].pop("reps")
    log(f"ingest in-process per 1,000 records: parse {res['parse_ms']['median']} ms, validate "
        f"{res['validate_ms']['median']} ms, store {res['store_ms']['median']} ms")
    return res


def _rows_text(server_ids: list[int], n_rows: int, t0: float) -> tuple[str, list[tuple]]:
    """Contract-shaped rows (the loadgen's values), as COPY text and as tuples."""
    received = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    buf = io.StringIO()
    rows = []
    per = len(server_ids)
    for k in range(n_rows):
        i = k % 97
        ts = datetime.fromtimestamp(t0 + k // per, tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00")
        row = (server_ids[k % per], ts, 20 + (i * 37) % 60 + 0.25, 40 + (i * 13) % 50 + 0.5, (i * 7) % 300 + 0.4,
               5 + (i * 3) % 40 + 0.1, STATES[i % len(STATES)], received)
        rows.append(row)
        buf.write("\t".join(map(str, row)) + "\n")
    return buf.getvalue(), rows


def _fresh_servers(conn, prefix: str, n: int = 20) -> list[int]:
    now = datetime.now(UTC)
    cur = conn.execute(
        "INSERT INTO ingest_server (name, profile, first_seen, last_seen, last_received_at, record_count) "
        "SELECT unnest(%s::text[]), 'generic', %s, %s, %s, 0 RETURNING id",
        [[f"{prefix}{i:03d}" for i in range(n)], now, now, now],
    )
    ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


_RECORD_COLS = "server_id, timestamp, cpu_pct, mem_pct, disk_io_mb_s, latency_ms, state, received_at"


def copy_rows_per_s(conn, *, prefix: str, rows: int, servers: int, t0: float) -> float:
    """Rows/s of one COPY of ``rows`` contract-shaped rows into ingest_metricrecord (one
    transaction), for ``servers`` fresh servers, each timestamp carrying every server once."""
    ids = _fresh_servers(conn, prefix, servers)
    text, _ = _rows_text(ids, rows, t0)
    started = time.perf_counter()
    with conn.cursor() as cur, cur.copy(f"COPY ingest_metricrecord ({_RECORD_COLS}) FROM STDIN") as copy:
        for i in range(0, len(text), 1 << 20):
            copy.write(text[i : i + (1 << 20)])
    conn.commit()
    return rows / (time.perf_counter() - started)


def _array_literal(values) -> str:
    return "{" + ",".join(f'"{v}"' if isinstance(v, str) else repr(v) for v in values) + "}"


def run_ceiling(*, reps: int, rows: int, log) -> dict:
    """COPY of contract-shaped rows into ingest_metricrecord for fresh servers, and INSERT … ON
    CONFLICT DO NOTHING in 1,000-row batches (one transaction each, like a feed request)."""
    import psycopg

    cols = _RECORD_COLS
    t0 = (datetime.now(UTC) - timedelta(days=13)).timestamp()
    copy_rates, insert_rates = [], []
    with psycopg.connect(pg_bench_dsn()) as conn:
        for rep in range(reps):
            copy_rates.append(copy_rows_per_s(conn, prefix=f"copy{rep}x", rows=rows, servers=20, t0=t0))

            ids = _fresh_servers(conn, f"ins{rep}x")
            _, tuples = _rows_text(ids, rows, t0)
            batches = []
            for i in range(0, rows, 1000):
                chunk = tuples[i : i + 1000]
                batches.append([_array_literal(col) for col in zip(*chunk, strict=True)])
            sql = (f"INSERT INTO ingest_metricrecord ({cols}) SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], "
                   "%s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::text[], %s::timestamptz[]) "
                   "ON CONFLICT (server_id, timestamp) DO NOTHING")
            started = time.perf_counter()
            for params in batches:
                conn.execute(sql, params)
                conn.commit()
            insert_rates.append(rows / (time.perf_counter() - started))
            log(f"ceiling rep {rep + 1}: COPY {copy_rates[-1]:,.0f} rows/s, INSERT ON CONFLICT (1,000-row batches) "
                f"{insert_rates[-1]:,.0f} rows/s")
    return {"rows": rows, "copy_rows_per_s": summary(copy_rates, 0), "insert_rows_per_s": summary(insert_rates, 0)}
