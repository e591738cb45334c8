"""The load-generating process: ``python -m bench.loadgen '<json spec>'`` prints one JSON result.

It runs apart from the bench's main process and from gunicorn so that the client's own work is
visible (``client_cpu_s``) and small. Feed bodies are serialised before the clock starts, each with
timestamps no other request uses, so every record is new (a duplicate counts as an error).

Modes: ``feed`` (POST /feed/data, closed loop over ``connections`` or open loop at ``rate``),
``get`` (GET a path, optionally after logging in through Django's login form), ``soak`` (the
simulated fleet at ``rate`` requests/s for ``minutes``, with per-minute figures).
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import aiohttp

from bench.rawhttp import Connection, build_post

STATES = ("healthy", "idle", "heavy_load", "morning_spike", "maintenance", "recovery", "healthy", "healthy")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def feed_bodies(*, servers: list[str], batch: int, t0: float, step: float, count: int, fleets: int = 1) -> list[bytes]:
    """``count`` bodies of ``batch`` records. With ``fleets`` > 1, body i comes from fleet i % fleets
    (the servers with a ``-f<k>`` suffix), as from that many feeders. Within a fleet each timestamp
    carries every server once and timestamps run t0, t0+step, …, so no (server, timestamp) repeats."""
    per_ts = len(servers)
    values = []
    for i in range(97):  # a small cycle of plausible values; the figures do not depend on them
        cpu = 20 + (i * 37) % 60 + 0.25
        mem = 40 + (i * 13) % 50 + 0.5
        values.append(f'"cpu_pct":{cpu:.2f},"mem_pct":{mem:.2f},"disk_io_mb_s":{(i * 7) % 300 + 0.4:.2f},'
                      f'"latency_ms":{5 + (i * 3) % 40 + 0.1:.2f},"state":"{STATES[i % len(STATES)]}"')
    fleet_names = [[json.dumps(s if fleets == 1 else f"{s}-f{f}") for s in servers] for f in range(fleets)]
    done = [0] * fleets  # records emitted per fleet
    bodies = []
    for b in range(count):
        f = b % fleets
        names, k = fleet_names[f], done[f]
        parts = []
        for _ in range(batch):
            ts = _iso(t0 + (k // per_ts) * step)
            parts.append(f'{{"timestamp":"{ts}","server_name":{names[k % per_ts]},{values[k % 97]}}}')
            k += 1
        done[f] = k
        bodies.append(('{"records":[' + ",".join(parts) + "]}").encode())
    return bodies


def _pct(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, max(0, round(q / 100 * (len(sorted_ms) - 1))))], 2)


def _latency_stats(lat_ms: list[float]) -> dict:
    s = sorted(lat_ms)
    return {"p50_ms": _pct(s, 50), "p90_ms": _pct(s, 90), "p99_ms": _pct(s, 99), "max_ms": _pct(s, 100)}


class Recorder:
    def __init__(self):
        self.lat_ms: list[float] = []
        self.errors = 0
        self.statuses: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.records = 0
        self.bytes = 0

    def add(self, ms: float, status: int, ok: bool, records: int, detail: str = "", nbytes: int = 0) -> None:
        self.lat_ms.append(ms)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.bytes += nbytes
        if ok:
            self.records += records
        else:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(f"{status}: {detail[:300]}")


async def _post(session, url, body: bytes, records: int, rec: Recorder, started: float) -> None:
    try:
        async with session.post(url, data=body) as response:
            text = await response.read()
            ok = response.status == 200
            if ok:
                reply = json.loads(text)
                ok = reply.get("accepted") == records and reply.get("duplicates") == 0
            rec.add((time.perf_counter() - started) * 1000, response.status, ok, records, text.decode(errors="replace"))
    except (TimeoutError, aiohttp.ClientError) as exc:
        rec.add((time.perf_counter() - started) * 1000, 0, False, records, repr(exc))


async def _post_raw(pool: asyncio.Queue, raw: bytes, records: int, rec: Recorder, started: float) -> None:
    conn = await pool.get()
    try:
        status, text = await conn.request(raw)
        ok = status == 200
        if ok:
            reply = json.loads(text)
            ok = reply.get("accepted") == records and reply.get("duplicates") == 0
        rec.add((time.perf_counter() - started) * 1000, status, ok, records, text.decode(errors="replace"))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        conn.close()
        rec.add((time.perf_counter() - started) * 1000, 0, False, records, repr(exc))
    finally:
        pool.put_nowait(conn)


async def _get(session, url, rec: Recorder, started: float) -> None:
    try:
        async with session.get(url, allow_redirects=False) as response:
            text = await response.read()
            rec.add((time.perf_counter() - started) * 1000, response.status, response.status == 200, 0,
                    text[:300].decode(errors="replace"), len(text))
    except (TimeoutError, aiohttp.ClientError) as exc:
        rec.add((time.perf_counter() - started) * 1000, 0, False, 0, repr(exc))


async def _closed_loop(make_call, connections: int, duration: float, limit: int | None) -> tuple[float, bool]:
    """``connections`` workers send back to back until ``duration`` passes or ``limit`` calls are made."""
    counter = iter(range(limit if limit is not None else 10**12))
    deadline = time.perf_counter() + duration
    exhausted = False

    async def worker():
        nonlocal exhausted
        while time.perf_counter() < deadline:
            i = next(counter, None)
            if i is None:
                exhausted = True
                return
            await make_call(i, time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started, exhausted


async def _open_loop(make_call, rate: float, count: int) -> float:
    """Call i is due at start + i/rate whatever happened before (no coordinated omission): its
    latency is measured from when it was due."""
    started = time.perf_counter()
    tasks = set()
    for i in range(count):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(make_call(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return time.perf_counter() - started


def _session(spec: dict, connections: int) -> aiohttp.ClientSession:
    headers = {"Content-Type": "application/json", "X-API-Key": spec.get("api_key", "")}
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=60),
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1
    )


async def _login(session, base: str, login: dict) -> None:
    url = base + login["path"]
    async with session.get(url) as response:
        html = await response.text()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if not match:
        raise RuntimeError("login form has no CSRF token")
    form = {"csrfmiddlewaretoken": match.group(1), "username": login["username"], "password": login["password"]}
    async with session.post(url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                     "Referer": url}, allow_redirects=False) as response:
        if response.status != 302:
            raise RuntimeError(f"login failed: {response.status}")


async def run_feed(spec: dict) -> dict:
    bodies = feed_bodies(servers=spec["servers"], batch=spec["batch"], t0=spec["t0"], step=spec["step"],
                         count=spec["count"], fleets=spec.get("fleets", 1))
    url = spec["base"] + "/feed/data"
    rec = Recorder()
    connections = spec.get("connections", 8)
    batch = spec["batch"]
    headers = {"Content-Type": "application/json", "X-API-Key": spec.get("api_key", "")}
    raws = [build_post(url, body, headers) for body in bodies]
    del bodies
    u = urlparse(url)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections if not spec.get("rate") else 64):
        pool.put_nowait(Connection(u.hostname, u.port))

    async def call(i, started):
        await _post_raw(pool, raws[i], batch, rec, started)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if spec.get("rate"):
        elapsed, exhausted = await _open_loop(call, spec["rate"], min(len(raws), int(spec["rate"] * spec["duration"]))), False
    else:
        elapsed, exhausted = await _closed_loop(call, connections, spec["duration"], len(raws))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    while not pool.empty():
        pool.get_nowait().close()
    return _result(rec, elapsed, cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, exhausted)


async def run_get(spec: dict) -> dict:
    rec = Recorder()
    connections = spec.get("connections", 4)
    url = spec["base"] + spec["path"]
    async with _session(spec, connections) as session:
        if spec.get("login"):
            await _login(session, spec["base"], spec["login"])

        async def call(i, started):
            await _get(session, url, rec, started)

        await call(0, time.perf_counter())  # warm: not counted
        rec.__init__()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        elapsed, _ = await _closed_loop(call, connections, spec["duration"], None)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return _result(rec, elapsed, cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, False)


async def run_soak(spec: dict) -> dict:
    """The simulated fleet, one 20-record batch per tick, ``rate`` ticks per second in real time:
    record timestamps follow the wall clock (tick i is stamped t0 + i/rate)."""
    from forecasting.engine.simulator import records_from_truth, simulate_fleet_truth

    t0 = datetime.fromtimestamp(spec["t0"], tz=UTC)
    minutes = spec["minutes"]
    rate = spec["rate"]
    end = t0 + timedelta(minutes=minutes)
    truth = simulate_fleet_truth(servers=spec["servers"], start=t0 - timedelta(hours=24), end=end, seed=spec["seed"])
    ticks = records_from_truth(truth, start=t0, end=end, interval_seconds=1.0 / rate, seed=spec["seed"])
    url = spec["base"] + "/feed/data"
    per_minute: list[Recorder] = [Recorder() for _ in range(minutes)]
    total = Recorder()
    count = int(minutes * 60 * rate)
    headers = {"Content-Type": "application/json", "X-API-Key": spec.get("api_key", "")}
    u = urlparse(url)
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(Connection(u.hostname, u.port))
    try:
        started = time.perf_counter()
        wall0 = time.time()
        tasks = set()
        body = build_post(url, json.dumps({"records": next(ticks)}, separators=(",", ":")).encode(), headers)
        for i in range(count):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            minute = min(minutes - 1, int(i / rate // 60))

            async def call(body=body, due=due, minute=minute):
                local = Recorder()
                await _post_raw(pool, body, len(spec["servers"]), local, due)
                for r in (per_minute[minute], total):
                    r.add(local.lat_ms[0], int(next(iter(local.statuses))), not local.errors, len(spec["servers"]),
                          (local.error_samples or [""])[0])

            task = asyncio.ensure_future(call())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if i + 1 < count:
                body = build_post(url, json.dumps({"records": next(ticks)}, separators=(",", ":")).encode(), headers)
            if (i + 1) % int(60 * rate) == 0:
                m = per_minute[minute]
                print(json.dumps({"minute": minute + 1, "requests": len(m.lat_ms), "errors": m.errors,
                                  **_latency_stats(m.lat_ms)}), file=sys.stderr, flush=True)
        if tasks:
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    finally:
        while not pool.empty():
            pool.get_nowait().close()
    out = _result(total, elapsed, None, False)
    out["wall_start"] = wall0
    out["per_minute"] = [
        {"minute": k + 1, "requests": len(m.lat_ms), "errors": m.errors, **_latency_stats(m.lat_ms)}
        for k, m in enumerate(per_minute)
    ]
    return out


def _result(rec: Recorder, elapsed: float, cpu: float | None, exhausted: bool) -> dict:
    n = len(rec.lat_ms)
    return {
        "requests": n,
        "errors": rec.errors,
        "statuses": rec.statuses,
        "error_samples": rec.error_samples,
        "elapsed_s": round(elapsed, 3),
        "rps": round(n / elapsed, 1) if elapsed else None,
        "records": rec.records,
        "records_per_s": round(rec.records / elapsed, 1) if elapsed else None,
        "mb_per_s": round(rec.bytes / elapsed / 1e6, 2) if elapsed else None,
        **_latency_stats(rec.lat_ms),
        "client_cpu_s": round(cpu, 2) if cpu is not None else None,
        "client_cpu_share": round(cpu / elapsed, 2) if cpu is not None and elapsed else None,
        "bodies_exhausted": exhausted,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["mode"] == "soak":
        import django

        django.setup()  # the simulator reads the contract from the ingest app
        result = asyncio.run(run_soak(spec))
    else:
        result = asyncio.run({"feed": run_feed, "get": run_get}[spec["mode"]](spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
