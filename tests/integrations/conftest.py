"""Helpers for the integration tests: a real Prometheus (Debian package `prometheus`) started on a
free loopback port with a temporary config and data folder, and small HTTP servers in threads (a
node_exporter-like exporter, an Alertmanager/webhook receiver)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen, log_path):
        self.url = url
        self.process = process
        self.log_path = log_path

    def query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, promql: str, *, count: int = 1, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if len(result) >= count:
                return result
            time.sleep(0.5)
        targets = urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10).read()[:2000]
        raise AssertionError(f"{promql!r} gave {len(result)} series after {timeout}s; targets: {targets!r}")


@pytest.fixture(scope="session", autouse=True)
def _drop_own_metric_files():
    """This test process's prometheus_client multiprocess files (feed counters) would otherwise pile
    up in $TFT_DATA_DIR/prometheus, one set per test run."""
    yield
    import glob
    import os

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        for path in glob.glob(os.path.join(folder, f"*_{os.getpid()}.db")):
            os.remove(path)


@pytest.fixture
def prometheus_factory(tmp_path):
    """start(scrape_configs: list[dict], extra={...more top-level config}) → a running Prometheus;
    stopped at teardown."""
    if PROMETHEUS is None:
        pytest.fail("the prometheus binary is missing: apt-get install prometheus (.ci/run installs it)")
    started: list[Prometheus] = []

    def start(scrape_configs: list[dict], extra: dict | None = None) -> Prometheus:
        port = free_port()
        config = tmp_path / f"prometheus-{port}.yml"
        # JSON is YAML: no YAML dependency needed to write the config.
        config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                      "scrape_configs": scrape_configs, **(extra or {})}))
        data = tmp_path / f"data-{port}"
        data.mkdir()
        log_path = tmp_path / f"prometheus-{port}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        server = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
        started.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return server
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"prometheus not ready: {log_path.read_text()[-2000:]}")

    yield start
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


class _Server:
    """A ThreadingHTTPServer on a free loopback port, served from a daemon thread."""

    def __init__(self, handler_class):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output clean
        pass


class Exporter(_Server):
    """node_exporter-like metrics whose rates are constant: cpu busy, memory used, disk MB/s and a
    latency histogram (all observations between 10 and 20 ms) are known exactly."""

    def __init__(self, *, cpu_busy: float, mem_used: float, disk_mb_s: float, histogram: bool):
        self.cpu_busy, self.mem_used, self.disk_mb_s, self.histogram = cpu_busy, mem_used, disk_mb_s, histogram
        self.t0 = time.time() - 1000  # counters start well above zero

        class Handler(_Quiet):
            def do_GET(self):
                body = self.server.owner.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    def text(self) -> str:
        # Each sample carries the time its value was computed: Prometheus stores that time, so a
        # scrape delayed by a busy test process cannot skew rate() on 1-second scrapes.
        now = time.time()
        t = now - self.t0
        ts = int(now * 1000)
        idle = (1 - self.cpu_busy / 100) * t
        total = 8e9
        samples = [
            ('node_cpu_seconds_total{cpu="0",mode="idle"}', idle),
            ('node_cpu_seconds_total{cpu="0",mode="user"}', t - idle),
            ("node_memory_MemTotal_bytes", total),
            ("node_memory_MemAvailable_bytes", total * (1 - self.mem_used / 100)),
            ('node_disk_read_bytes_total{device="sda"}', self.disk_mb_s * 2 / 3 * 1048576 * t),
            ('node_disk_written_bytes_total{device="sda"}', self.disk_mb_s / 3 * 1048576 * t),
        ]
        if self.histogram:
            n = 100 * t  # 100 requests a second, all between 10 and 20 ms
            samples += [
                ('http_request_duration_seconds_bucket{le="0.01"}', 0.0),
                ('http_request_duration_seconds_bucket{le="0.02"}', n),
                ('http_request_duration_seconds_bucket{le="+Inf"}', n),
                ("http_request_duration_seconds_sum", 0.015 * n),
                ("http_request_duration_seconds_count", n),
            ]
        return "".join(f"{name} {value!r} {ts}\n" for name, value in samples)


class Receiver(_Server):
    """Records every POST (path, JSON body); answers 500 to the next `fail[path_prefix]` requests,
    and `redirect[path_prefix] = (status, location)` to every POST there; `delay[path_prefix]`
    seconds before answering a POST there (a slow receiver, so concurrent deliveries overlap). GETs
    are recorded too (body None) and answered 200, as a web page that a followed redirect would land
    on."""

    def __init__(self):
        self.requests: list[tuple[str, object, int]] = []
        self.gets: list[str] = []
        self.fail: dict[str, int] = {}
        self.redirect: dict[str, tuple[int, str]] = {}
        self.delay: dict[str, float] = {}
        self.lock = threading.Lock()

        class Handler(_Quiet):
            def do_GET(self):
                with self.server.owner.lock:
                    self.server.owner.gets.append(self.path)
                self._answer(200)

            def do_POST(self):
                owner = self.server.owner
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                time.sleep(max((s for p, s in owner.delay.items() if self.path.startswith(p)), default=0))
                with owner.lock:
                    code, location = 200, None
                    for prefix, n in owner.fail.items():
                        if self.path.startswith(prefix) and n > 0:
                            owner.fail[prefix] = n - 1
                            code = 500
                            break
                    for prefix, (status, target) in owner.redirect.items():
                        if self.path.startswith(prefix):
                            code, location = status, target
                    owner.requests.append((self.path, body, code))
                self._answer(code, location)

            def _answer(self, code, location=None):
                self.send_response(code)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        super().__init__(Handler)

    def ok(self, prefix: str) -> list:
        return [body for path, body, code in self.requests if path.startswith(prefix) and code == 200]


@pytest.fixture
def exporter_factory():
    servers: list[Exporter] = []

    def make(**kwargs) -> Exporter:
        server = Exporter(**kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def fleet_with_a_run(no_models):
    """Two ready servers, one hot, and a complete prediction run (heuristic forecasts: no model)."""
    from forecasting.runs.chunks import fleet_predict
    from tests.conftest import ingest_fleet

    ingest_fleet({"ppdb001": {"cpu_pct": 97.0}, "ppweb001": {}})
    return fleet_predict()
