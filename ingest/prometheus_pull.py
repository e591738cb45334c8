"""Prometheus pull feeder: contract records from PromQL, through the normal ingest path.

For each contract metric a PromQL expression gives one series per instance (defaults below, for
node_exporter and a latency histogram). Samples of the same instance and time become one record,
which goes through `validate_records` then `records_ingest`: the same validation and idempotency as
POST /feed/data, so a backfill that overlaps earlier data, or a poller restarted mid-interval, only
produces duplicates.

Rules (README "Prometheus and Grafana"):
- server_name: the instance map's entry, else the `instance` label without its port
  (`db-1.example:9100` → `db-1.example`), with characters a server name may not hold replaced by `-`.
- timestamps: range queries are aligned to multiples of the step, and live polls to multiples of the
  poll interval, so re-reading the same span gives the same timestamps.
- missing values: a record needs all four metrics; a metric with no sample for that instance and time
  takes its configured default (e.g. latency_ms=0 where no histogram exists), else the record is
  skipped and counted. NaN/Inf samples count as missing; percentages are clamped to 0–100.
- state: given per server (states map), else derived from the values, first match wins:
  cpu ≥ 95 or mem ≥ 97 → critical_issue; cpu ≥ 80 or mem ≥ 90 → heavy_load; cpu < 5 → idle;
  otherwise healthy.
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from string import Template

from django.conf import settings

from ingest.contract import METRICS, PERCENT_METRICS, SERVER_NAME_CHARS, SERVER_NAME_MAX_LENGTH, STATES
from ingest.services import records_ingest
from ingest.validation import validate_records

logger = logging.getLogger(__name__)

# $window: rate window; $histogram: a histogram's base name (in seconds); $quantile: 0–1.
DEFAULT_QUERIES: dict[str, str] = {
    "cpu_pct": '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[$window])))',
    "mem_pct": "100 * (1 - avg by (instance) (node_memory_MemAvailable_bytes)"
    " / avg by (instance) (node_memory_MemTotal_bytes))",
    "disk_io_mb_s": "sum by (instance) (rate(node_disk_read_bytes_total[$window])"
    " + rate(node_disk_written_bytes_total[$window])) / 1048576",
    "latency_ms": "1000 * histogram_quantile($quantile, sum by (instance, le) (rate(${histogram}_bucket[$window])))",
}
MAX_POINTS_PER_QUERY = 10_000  # Prometheus refuses range queries over 11,000 points per series
_BAD_NAME_CHARS = re.compile(rf"[^{SERVER_NAME_CHARS}]")


class PrometheusError(Exception):
    pass


@dataclass(slots=True)
class PullConfig:
    url: str
    queries: dict[str, str] = field(default_factory=dict)  # metric → PromQL (overrides the defaults)
    instances: dict[str, str] = field(default_factory=dict)  # instance label → server_name
    states: dict[str, str] = field(default_factory=dict)  # server_name → state
    defaults: dict[str, float] = field(default_factory=dict)  # metric → value when missing
    label: str = "instance"
    rate_window: str = "5m"
    latency_histogram: str = "http_request_duration_seconds"
    latency_quantile: float = 0.95
    timeout: float = 30.0

    def promql(self, metric: str) -> str:
        template = self.queries.get(metric) or DEFAULT_QUERIES[metric]
        return Template(template).safe_substitute(
            window=self.rate_window, histogram=self.latency_histogram, quantile=self.latency_quantile
        )


@dataclass(slots=True)
class PullResult:
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0  # (instance, time) pairs missing a metric with no default
    servers: set = field(default_factory=set)

    def add(self, other: PullResult) -> None:
        self.records += other.records
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.skipped += other.skipped
        self.servers |= other.servers


def parse_duration(text: str) -> timedelta:
    """'90s', '5m', '24h', '7d' (Prometheus-style, one unit)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 5m, 24h or 7d")
    n, unit = int(match.group(1)), match.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


def _api(config: PullConfig, path: str, params: dict) -> list:
    url = f"{config.url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=config.timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace")
        raise PrometheusError(f"{path}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise PrometheusError(f"{path}: {exc}") from exc
    if body.get("status") != "success":
        raise PrometheusError(f"{path}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def _samples(config: PullConfig, result: list) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for series in result:
        instance = series.get("metric", {}).get(config.label)
        if instance is None:
            continue
        values = series.get("values") or ([series["value"]] if "value" in series else [])
        out.setdefault(instance, []).extend((float(t), float(v)) for t, v in values)
    return out


def server_name_for(instance: str, config: PullConfig) -> str:
    if instance in config.instances:
        return config.instances[instance]
    host = instance
    if re.fullmatch(r".+:\d+", instance) and not instance.startswith("["):
        host = instance.rsplit(":", 1)[0]
    elif instance.startswith("[") and "]" in instance:  # [::1]:9100
        host = instance[1 : instance.index("]")]
    name = _BAD_NAME_CHARS.sub("-", host).lstrip("._:@-")
    return name[:SERVER_NAME_MAX_LENGTH] or "unknown"


def derive_state(values: dict[str, float]) -> str:
    cpu, mem = values["cpu_pct"], values["mem_pct"]
    if cpu >= 95 or mem >= 97:
        return "critical_issue"
    if cpu >= 80 or mem >= 90:
        return "heavy_load"
    if cpu < 5:
        return "idle"
    return "healthy"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def records_from_samples(
    by_metric: dict[str, dict[str, list[tuple[float, float]]]], config: PullConfig
) -> tuple[list[dict], int]:
    """{metric: {instance: [(t, v)]}} → contract records, and how many (instance, t) were incomplete."""
    grid: dict[tuple[str, float], dict[str, float]] = {}
    for metric, series in by_metric.items():
        for instance, points in series.items():
            for t, v in points:
                if math.isfinite(v):
                    grid.setdefault((instance, t), {})[metric] = v
    records, skipped = [], 0
    for (instance, t), values in sorted(grid.items(), key=lambda item: (item[0][1], item[0][0])):
        for metric, default in config.defaults.items():
            values.setdefault(metric, default)
        if any(m not in values for m in METRICS):
            skipped += 1
            continue
        clean = {
            m: (min(100.0, max(0.0, values[m])) if m in PERCENT_METRICS else max(0.0, values[m])) for m in METRICS
        }
        name = server_name_for(instance, config)
        records.append(
            {
                "timestamp": _iso(t),
                "server_name": name,
                **{m: round(v, 4) for m, v in clean.items()},
                "state": config.states.get(name) or derive_state(clean),
            }
        )
    return records, skipped


def records_feed(records: list[dict]) -> PullResult:
    """Validate and store, in batches the API would also accept."""
    result = PullResult(records=len(records), servers={r["server_name"] for r in records})
    size = settings.TFT_MAX_BATCH_RECORDS
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        clean, problems = validate_records(chunk)
        if problems:
            bad = {p.index for p in problems}
            result.rejected += len(bad)
            logger.warning(
                "pulled records rejected by the contract",
                extra={"rejected": len(bad), "first": [p.as_dict() for p in problems[:3]]},
            )
        if clean:
            stored = records_ingest(records=clean)
            result.accepted += stored.accepted
            result.duplicates += stored.duplicates
    return result


def _pull(config: PullConfig, path: str, params: dict) -> dict[str, dict[str, list[tuple[float, float]]]]:
    return {metric: _samples(config, _api(config, path, {**params, "query": config.promql(metric)})) for metric in METRICS}


def prometheus_backfill(
    *,
    config: PullConfig,
    span: timedelta,
    step: timedelta,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> PullResult:
    """Range queries over the last `span`, `step` apart, in chunks Prometheus accepts."""
    now = now or datetime.now(UTC)
    step_s = max(1, int(step.total_seconds()))
    end = int(now.timestamp()) // step_s * step_s
    start = end - int(span.total_seconds()) // step_s * step_s
    return prometheus_range(config=config, start=start, end=end, step_s=step_s, progress=progress)


def prometheus_range(
    *,
    config: PullConfig,
    start: int,
    end: int,
    step_s: int,
    progress: Callable[[str], None] | None = None,
    stored: Callable[[int], None] | None = None,
) -> PullResult:
    """Every instant start, start + step_s, … ≤ end (epoch seconds, aligned by the caller), by range
    queries in chunks Prometheus accepts; `stored(chunk_end)` after each chunk is stored, so a caller
    that fails half-way knows how far it got."""
    total = PullResult()
    chunk_s = step_s * MAX_POINTS_PER_QUERY
    # Few chunks for a day at 5 minutes (one), so progress also reports every 6 h of data.
    chunk_s = min(chunk_s, max(step_s, 6 * 3600 // step_s * step_s))
    cursor = start
    while cursor <= end:
        chunk_end = min(end, cursor + chunk_s - step_s)
        by_metric = _pull(config, "/api/v1/query_range", {"start": cursor, "end": chunk_end, "step": step_s})
        records, skipped = records_from_samples(by_metric, config)
        part = records_feed(records)
        part.skipped = skipped
        total.add(part)
        if stored:
            stored(chunk_end)
        if progress:
            progress(
                f"backfill {_iso(cursor)} → {_iso(chunk_end)}: {part.records} records from "
                f"{len(part.servers)} servers ({part.accepted} accepted, {part.duplicates} duplicates, "
                f"{part.rejected} rejected, {skipped} incomplete)"
            )
        cursor = chunk_end + step_s
    return total


def prometheus_poll(*, config: PullConfig, at: datetime) -> PullResult:
    """One instant query per metric at `at` (the caller aligns it to the poll interval)."""
    by_metric = _pull(config, "/api/v1/query", {"time": f"{at.timestamp():.3f}"})
    records, skipped = records_from_samples(by_metric, config)
    result = records_feed(records)
    result.skipped = skipped
    return result


def load_mapping(path: str) -> dict:
    """A JSON file: {"queries": {metric: promql}, "instances": {instance: server}, "states": {server:
    state}, "defaults": {metric: value}} — every key optional."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    unknown = set(data) - {"queries", "instances", "states", "defaults"}
    if unknown:
        raise ValueError(f"unknown keys in {path}: {sorted(unknown)}")
    for metric in (*data.get("queries", {}), *data.get("defaults", {})):
        if metric not in METRICS:
            raise ValueError(f"{metric!r} is not a contract metric ({', '.join(METRICS)})")
    for server, state in data.get("states", {}).items():
        if state not in STATES:
            raise ValueError(f"state {state!r} for {server} is not one of {', '.join(STATES)}")
    return data
