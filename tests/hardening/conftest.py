"""Real processes for fault injection: a private PostgreSQL cluster, a private Redis, gunicorn and a
Celery worker with beat, all on free loopback ports and temporary folders, never the shared
services on 5432/6379.

The stack is started once for this package (initdb, migrate and a ready fleet cost tens of seconds;
it is stopped after the package's last test, so it does not run beside the rest of the suite) and
every test leaves it running and healthy: a test that stops a service starts it again in a
`finally`. Every process runs in its own process group, which is what the tests kill.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def _pg_bin() -> Path:
    """TFT_HARDENING_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin that has initdb."""
    if os.environ.get("TFT_HARDENING_PG_BIN"):
        return Path(os.environ["TFT_HARDENING_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
API_KEY = "k"
INTERVAL_SECONDS = 5
RUN_STALE_SECONDS = 15
READY_SERVERS = int(os.environ.get("TFT_HARDENING_SERVERS", "120"))
HTTP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value, or fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- Processes ----------------------------------------------------------------------------------


class Process:
    """A child in its own session/process group, output to a log file; stop() never leaves it behind."""

    def __init__(self, name: str, argv: list[str], *, env: dict, log_dir: Path, cwd: Path = ROOT):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None

    def start(self) -> Process:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child owns it; closed right after the fork
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()
        logger.info("started %s (pid %s)", self.name, self.popen.pid)
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the whole process group (main process, pool children, embedded beat)."""
        self._signal_group(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM for %ss; killing", self.name, timeout)
        self._signal_group(signal.SIGKILL)  # leftovers in the group (pool children) go too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _as_postgres_user(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the postgres OS user when we are root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


class PostgresCluster:
    """A throwaway cluster: trust auth, fsync off, socket and data in a private temporary folder."""

    def __init__(self):
        # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700 and the postgres user must reach it.
        self.base = Path(tempfile.mkdtemp(prefix="tft-hardening-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        self.log = self.base / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/tft"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=tft connect_timeout=3"

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        result = subprocess.run(_as_postgres_user(argv), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): {result.stdout[-2000:]} {result.stderr[-2000:]}"
            )

    def init(self) -> None:
        self._run(
            [str(PG_BIN / "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D", str(self.data)],
            timeout=120,
        )
        self.start()
        self._run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "tft"])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            timeout=90,
        )

    @property
    def running(self) -> bool:
        result = subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"]),
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], timeout=90)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class HttpResult:
    status: int  # 0: no response (connection error or timeout)
    headers: dict
    body: bytes
    seconds: float
    error: str = ""

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, payload=None, *, timeout: float = HTTP_TIMEOUT) -> HttpResult:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("X-API-Key", API_KEY)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResult(response.status, dict(response.headers), response.read(), time.monotonic() - started)
    except urllib.error.HTTPError as exc:
        return HttpResult(exc.code, dict(exc.headers), exc.read(), time.monotonic() - started)
    except (OSError, urllib.error.URLError) as exc:  # refused, reset, timed out
        return HttpResult(0, {}, b"", time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")


def record(server: str, ts: datetime, *, cpu: float = 40.0, state: str = "healthy") -> dict:
    return {
        "timestamp": ts.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "server_name": server,
        "cpu_pct": cpu,
        "mem_pct": 50.0,
        "disk_io_mb_s": 30.0,
        "latency_ms": 10.0,
        "state": state,
    }


# --- The stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    pg: PostgresCluster
    redis_port: int
    web_port: int
    data_dir: Path
    models_dir: Path
    model_backup: Path | None
    env: dict
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def get(self, path: str, **kwargs) -> HttpResult:
        return http("GET", self.base_url + path, **kwargs)

    def post_feed(self, records: list[dict], **kwargs) -> HttpResult:
        return http("POST", self.base_url + "/feed/data", {"records": records}, **kwargs)

    # Database access for assertions: psycopg on the private cluster, never Django's ORM in-process.
    def sql(self, query: str, params=None, *, autocommit: bool = True) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg.dsn, autocommit=autocommit) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def latest_complete_run(self) -> tuple | None:
        rows = self.sql(
            "SELECT id, servers, tft_count, fallback_count, fallback_reasons FROM forecasting_predictionrun "
            "WHERE status = 'complete' ORDER BY finished_at DESC LIMIT 1"
        )
        return rows[0] if rows else None

    def wait_for_complete_run(self, *, after_id: int = 0, timeout: float = 120, where: str = "true") -> tuple:
        def newer():
            rows = self.sql(
                "SELECT id, servers, tft_count, fallback_count, fallback_reasons FROM forecasting_predictionrun "
                f"WHERE status = 'complete' AND id > %s AND servers > 0 AND ({where}) ORDER BY id DESC LIMIT 1",
                [after_id],
            )
            return rows[0] if rows else None

        try:
            return wait_for(newer, timeout=timeout, what=f"a complete run after #{after_id} where {where}")
        except pytest.fail.Exception:
            runs = self.sql(
                "SELECT id, status, servers, tft_count, fallback_count, fallback_reasons, error "
                "FROM forecasting_predictionrun ORDER BY id DESC LIMIT 6"
            )
            logger.error("latest runs: %s\nworker log tail:\n%s", runs, self.processes["worker"].tail())
            raise

    # Processes
    def start_redis(self) -> None:
        self.processes["redis"] = Process(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            env=self.env,
            log_dir=self.data_dir,
        ).start()
        wait_for(lambda: _port_open(self.redis_port), timeout=20, interval=0.1, what="redis to listen")

    def start_web(self) -> None:
        self.processes["web"] = Process(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "tftsite.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
            ],
            env=self.env,
            log_dir=self.data_dir,
        ).start()
        wait_for(lambda: self.get("/health", timeout=5).status == 200, timeout=60, what="gunicorn /health 200")

    def start_worker(self) -> None:
        self.processes["worker"] = Process(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tftsite",
                "worker",
                "--beat",
                "-Q",
                "celery,gpu",
                "-c",
                "1",
                "--loglevel",
                "info",
                "-s",
                str(self.data_dir / "beat-schedule"),
                "-n",
                f"hardening{self.web_port}@%h",
            ],
            env=self.env,
            log_dir=self.data_dir,
        ).start()

    def manage(self, *args: str, timeout: float = 300) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stdout[-2000:]} {result.stderr[-3000:]}")

    def stop_all(self) -> None:
        for name in ("worker", "web", "redis"):
            process = self.processes.get(name)
            if process is not None:
                process.stop()


def _needs(binary: Path | str) -> None:
    if not shutil.which(str(binary)):
        pytest.skip(f"fault-injection tests need {binary}")


def _model_folders(folder: Path) -> list[Path]:
    return [
        p
        for p in sorted(folder.glob("tft_model_*"))
        if (p / "weights.safetensors").is_file() and (p / "spec.json").is_file()
    ]


def _prepare_models(stack_env: dict, models_dir: Path) -> Path | None:
    """A private copy of the repo's newest model folder; without one, a tiny model trained in seconds.
    Returns the folder (the one the worker will use) or None when no model could be had."""
    models_dir.mkdir(parents=True, exist_ok=True)
    existing = _model_folders(ROOT / "models")
    if existing:
        source = existing[-1]
        shutil.copytree(source, models_dir / source.name)
    else:
        options = (
            "--simulated 8 --days 2 --epochs 1 --batches-per-epoch 3 --batch-size 16 --hidden-size 8 "
            "--attention-heads 1 --hidden-continuous-size 4 --max-minutes 2 --threads 1 --device cpu "
            "--no-progress --no-backtest"
        )
        argv = [sys.executable, "manage.py", "train_tft", *options.split(), "--out", str(models_dir)]
        # Trained on simulated data only, on the embedded SQLite default in a folder of its own.
        env = {key: value for key, value in stack_env.items() if key != "DATABASE_URL"}
        env["TFT_DATA_DIR"] = str(models_dir.parent / "train-data")
        result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            logger.warning("could not train a throwaway model: %s", result.stderr[-2000:])
            return None
    folders = _model_folders(models_dir)
    return folders[-1] if folders else None


def ingest_ready_fleet(stack: Stack, servers: list[str]) -> None:
    """14 h of 5-minute simulated history per server (>= 150 records: every server is ready)."""
    from forecasting.engine.simulator import simulate_records

    end = datetime.now(UTC).replace(second=0, microsecond=0)
    records = [
        r
        for batch in simulate_records(
            servers=servers, start=end - timedelta(hours=14), end=end, interval_seconds=300, seed=7
        )
        for r in batch
    ]
    for i in range(0, len(records), 5000):
        result = stack.post_feed(records[i : i + 5000], timeout=120)
        assert result.status == 200, (result.status, result.body[:500])


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Stack:
    """Private Postgres + Redis + gunicorn + Celery worker/beat with a ready fleet and a model."""
    _needs(PG_BIN / "initdb")
    _needs("redis-server")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root needs runuser to start PostgreSQL as the postgres user")
    base = tmp_path_factory.mktemp("hardening")
    data_dir = base / "data"
    data_dir.mkdir()
    pg = PostgresCluster()
    redis_port, web_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TFT_", "CELERY_", "PYTEST_"))}
    env.update(
        DATABASE_URL=pg.url,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
        DEBUG="false",
        DJANGO_SECRET_KEY="x",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        TFT_API_KEY=API_KEY,
        TFT_PREDICTION_INTERVAL_SECONDS=str(INTERVAL_SECONDS),
        TFT_RUN_STALE_SECONDS=str(RUN_STALE_SECONDS),
        TFT_DATA_DIR=str(data_dir),
        TFT_MODELS_DIR=str(base / "models"),
        TFT_DEVICE="cpu",
        # Several chunks per run: the run's heartbeat moves per chunk, well inside TFT_RUN_STALE_SECONDS.
        TFT_PREDICTION_CHUNK_SIZE="40",
        # These tests break the run machinery (model folder, worker, Postgres, Redis) and wait seconds for
        # the next run to show it. The fleet is fed once, so under the due-only schedule no bucket closes
        # and no run would hold a server again; every run forecasts every server instead. The due
        # schedule has its own tests (tests/forecasting/runs/test_due_schedule.py).
        TFT_PREDICTION_DUE_ONLY="false",
        PROMETHEUS_MULTIPROC_DIR=str(data_dir / "prometheus"),
        DJANGO_SETTINGS_MODULE="tftsite.settings",
        LOG_LEVEL="info",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    (data_dir / "prometheus").mkdir()
    stack = Stack(
        pg=pg,
        redis_port=redis_port,
        web_port=web_port,
        data_dir=data_dir,
        models_dir=base / "models",
        model_backup=None,
        env=env,
    )
    started = time.monotonic()
    # A SIGTERM (CI timeout) becomes KeyboardInterrupt, so the finally below still stops everything.
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        model = _prepare_models(env, stack.models_dir)
        if model is not None:
            stack.model_backup = base / "model-backup" / model.name
            shutil.copytree(model, stack.model_backup)
        logger.info("model ready in %.1fs: %s", time.monotonic() - started, model)
        pg.init()
        stack.manage("migrate", "--noinput", "-v0")
        stack.manage("register_models")
        stack.start_redis()
        stack.start_web()
        from forecasting.engine.simulator import fleet_names

        ingest_ready_fleet(stack, fleet_names(READY_SERVERS))
        stack.start_worker()
        stack.wait_for_complete_run(timeout=180)
        logger.info("stack ready in %.1fs", time.monotonic() - started)
        yield stack
    finally:
        stack.stop_all()
        pg.destroy()
        signal.signal(signal.SIGTERM, previous_handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def healthy_stack(stack: Stack) -> Stack:
    """The stack, checked healthy before and after the test (a test must restore what it broke)."""
    for name in ("redis", "web", "worker"):
        assert stack.processes[name].alive, f"{name} is not running:\n{stack.processes[name].tail()}"
    assert stack.get("/health").status == 200
    yield stack
    if not stack.pg.running:
        logger.warning("postgres left stopped by the test; restarting")
        stack.pg.start()
    for name in ("redis", "web", "worker"):
        if not stack.processes[name].alive:
            logger.warning("%s left stopped by the test; restarting", name)
            getattr(stack, f"start_{name}")()
