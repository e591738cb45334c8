"""Environment, database, processes and statistics shared by the bench sections."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
# gitignored: static files, logs, beat schedule, prometheus files; BENCH_DATA_DIR lets two benches run side by side
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", str(BENCH_DIR / ".data")))
RESULTS_DIR = BENCH_DIR / "results"
PY = sys.executable

DB_NAME = "tftsite_bench"
API_KEY = "bench-api-key-0123456789abcdef"
ADMIN_USER = "bench"
ADMIN_PASSWORD = "bench-Passw0rd-long-enough"
HOST = "127.0.0.1"


def bench_env(*, rate_limits_off: bool = True) -> dict[str, str]:
    """Production-like settings on loopback (DEBUG off, Postgres, Redis DB 14)."""
    pg = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    env = {
        "DATABASE_URL": f"{pg.rstrip('/')}/{DB_NAME}",
        "CELERY_BROKER_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TFT_API_KEY": API_KEY,
        "TFT_DATA_DIR": str(DATA_DIR),
        "PROMETHEUS_MULTIPROC_DIR": str(DATA_DIR / "prometheus"),
        "DJANGO_SETTINGS_MODULE": "tftsite.settings",
        "DJANGO_SUPERUSER_USERNAME": ADMIN_USER,
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        "DJANGO_SUPERUSER_EMAIL": "bench@example.com",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning"),
    }
    if rate_limits_off:
        env["TFT_RATE_LIMIT_FEED_PER_MINUTE"] = "0"
        env["TFT_RATE_LIMIT_READ_PER_MINUTE"] = "0"
        env["TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE"] = "0"  # the benches page /predictions/current, read /status
        env["TFT_RATE_LIMIT_METRICS_PER_MINUTE"] = "0"
    return env


def apply_env() -> dict[str, str]:
    env = bench_env()
    os.environ.update(env)
    return env


def pg_admin_dsn() -> str:
    url = urlparse(bench_env()["DATABASE_URL"])
    return f"host={url.hostname} port={url.port or 5432} user={url.username or 'postgres'} dbname=postgres"


def pg_bench_dsn() -> str:
    url = urlparse(bench_env()["DATABASE_URL"])
    return f"host={url.hostname} port={url.port or 5432} user={url.username or 'postgres'} dbname={DB_NAME}"


def recreate_database() -> None:
    """Drop and recreate tftsite_bench (only that database), empty Redis DB 14, migrate."""
    import psycopg

    with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [DB_NAME],
        )
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    flush_redis()
    shutil.rmtree(DATA_DIR / "prometheus", ignore_errors=True)
    (DATA_DIR / "prometheus").mkdir(parents=True, exist_ok=True)
    (DATA_DIR / "logs").mkdir(parents=True, exist_ok=True)
    for name in ("celerybeat-schedule", "celerybeat-schedule.db", "celerybeat-schedule.dat",
                 "celerybeat-schedule.dir", "celerybeat-schedule.bak"):
        (DATA_DIR / name).unlink(missing_ok=True)
    manage("migrate", "--noinput", "-v0")
    manage("collectstatic", "--noinput", "-v0")
    manage("createsuperuser", "--noinput")


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(bench_env()["CELERY_BROKER_URL"]).flushdb()


def manage(*args: str) -> None:
    env = {**os.environ, **bench_env()}
    subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=env, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def proc_mem(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process still running, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples by the processes in ``after`` (a process that started in
    between counts from 0; one that exited in between is lost, so this can only undercount)."""
    return sum(max(0.0, t - before.get(pid, 0.0)) for pid, t in after.items())


def bench_backend_pids(db: str | None = None) -> list[int]:
    """Postgres backends connected to the bench database (gunicorn keeps its connections)."""
    import psycopg

    with psycopg.connect(pg_admin_dsn(), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [db or DB_NAME]).fetchall()
    return [r[0] for r in rows]


class Process:
    """A child process in its own process group, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT):
        self.name = name
        self.log_path = DATA_DIR / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")


@contextmanager
def gunicorn(*, workers: int = 3, worker_class: str = "sync", threads: int = 1, name: str = "gunicorn",
             tree: Path = ROOT, env: dict[str, str] | None = None):
    """gunicorn tftsite.wsgi:application on a free loopback port; yields (base URL, Process).
    ``tree`` and ``env`` run another checkout's code (its own interpreter) on its own database."""
    port = free_port()
    argv = [str(tree / ".venv/bin/python") if tree != ROOT else PY, "-m", "gunicorn", "tftsite.wsgi:application", "--bind", f"{HOST}:{port}",
            "--workers", str(workers), "--timeout", "60", "--graceful-timeout", "5", "--backlog", "2048"]
    if worker_class != "sync":
        argv += ["--worker-class", worker_class, "--threads", str(threads)]
    proc = Process(name, argv, env or bench_env(), cwd=tree)
    base = f"http://{HOST}:{port}"
    try:
        wait_http(base + "/health", timeout=60)
        # every worker imports the app lazily on its first request: warm them all up
        for _ in range(workers * 4):
            wait_http(base + "/health", timeout=10)
        yield base, proc
    finally:
        proc.stop()


def web_worker_pids(master: Process) -> list[int]:
    return children(master.pid)


# --- statistics ---------------------------------------------------------------------------------


def summary(values: list[float], digits: int = 1) -> dict:
    """Median of the repetitions with min and max (and the raw values)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "reps": []}
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "reps": [round(v, digits) for v in vals],
    }


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def write_json(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path
