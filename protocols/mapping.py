"""How samples become contract records (README "Observability protocols", settings TFT_PROTOCOL_*).

- metric: a series named after a contract metric (`cpu_pct`), `tft:<metric>` (a recording rule's
  name) or an alias from TFT_PROTOCOL_SERIES_ALIASES; other series are ignored (and counted).
- server: the first of TFT_PROTOCOL_SERVER_LABELS present (`server_name`, then `instance` with its
  port stripped, as the pull feeder does); OTLP falls back to resource attributes.
- state: a `state` label on a metric's sample, or a `tft:state{state="..."} 1` info series at the
  same instant; else TFT_PROTOCOL_DEFAULT_STATE.
- time: samples of one server whose timestamps fall in the same TFT_PROTOCOL_TIMESTAMP_RESOLUTION_MS
  window form one record, dated at the window's start.
- NaN samples (Prometheus' staleness markers) and +-Inf are skipped and counted as ignored.

Every record is then checked by ingest.validation, the JSON feed's own rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

from ingest.contract import METRICS
from ingest.prometheus_pull import PullConfig, server_name_for
from ingest.validation import Problem, validate_records

STATE_FIELD = "state"
STATE_SERIES = "tft:state"
_METRIC_SET = frozenset(METRICS)
_NO_INSTANCE_MAP = PullConfig(url="")

Key = tuple[str, int]  # (server_name, aligned Unix ms)


def series_metric(name: str) -> str | None:
    """The contract metric a series name feeds, or None."""
    if name in _METRIC_SET:
        return name
    if name.startswith("tft:") and name[4:] in _METRIC_SET:
        return name[4:]
    return settings.TFT_PROTOCOL_SERIES_ALIASES.get(name)


def server_from_labels(labels: dict[str, str]) -> str | None:
    for label in settings.TFT_PROTOCOL_SERVER_LABELS:
        value = labels.get(label)
        if value:
            return server_name_for(value, _NO_INSTANCE_MAP) if label == "instance" else value
    return None


def aligned_ms(ts_ms: int) -> int:
    resolution = settings.TFT_PROTOCOL_TIMESTAMP_RESOLUTION_MS
    return ts_ms - ts_ms % resolution


def instants(timestamps: list[int]) -> dict[int, int]:
    """Each timestamp → the first of its run of timestamps less than the resolution apart. An SDK
    stamps each instrument of one collection microseconds apart; truncating alone would split a
    collection that straddles a second boundary into two records."""
    resolution = settings.TFT_PROTOCOL_TIMESTAMP_RESOLUTION_MS
    out: dict[int, int] = {}
    start = None
    for ts in sorted(set(timestamps)):
        if start is None or ts - start >= resolution:
            start = ts
        out[ts] = start
    return out


def iso_ms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat()


@dataclass(slots=True)
class Partials:
    """Samples gathered into (server, instant) → {metric or "state": value}, with the counts."""

    records: dict[Key, dict] = field(default_factory=dict)
    samples: int = 0  # samples that fed a record
    ignored: int = 0  # unmapped series, staleness markers
    unnamed: list[str] = field(default_factory=list)  # mapped series with no server label

    def add(self, server: str, ts_ms: int, name: str, value) -> None:
        self.records.setdefault((server, aligned_ms(ts_ms)), {})[name] = value
        self.samples += 1

    def add_sample(self, *, metric: str, labels: dict[str, str], server: str | None, ts_ms: int, value: float) -> None:
        """One numeric sample of a contract metric (the state label, if any, rides along)."""
        if not math.isfinite(value):
            self.ignored += 1
            return
        if server is None:
            if len(self.unnamed) < 20:
                self.unnamed.append(metric)
            return
        self.add(server, ts_ms, metric, value)
        state = labels.get(STATE_FIELD)
        if state:
            self.records[(server, aligned_ms(ts_ms))][STATE_FIELD] = state

    def complete(self) -> tuple[dict[Key, dict], dict[Key, dict]]:
        """(records with all four metrics, records still missing some)."""
        full, partial = {}, {}
        for key, values in self.records.items():
            (full if all(m in values for m in METRICS) else partial)[key] = values
        return full, partial


def record_dict(key: Key, values: dict) -> dict:
    server, ts_ms = key
    return {
        "timestamp": iso_ms(ts_ms),
        "server_name": server,
        **{m: values[m] for m in METRICS},
        "state": values.get(STATE_FIELD) or settings.TFT_PROTOCOL_DEFAULT_STATE,
    }


def partials_problems(partials: Partials) -> list[Problem]:
    """The contract's problems with every (possibly partial) record, named by server and time.

    A partial record is checked with its missing metrics set to 0 (valid for every metric), so the
    metrics and labels that did arrive are held to ingest.validation's rules, nothing else.
    """
    keys = sorted(partials.records)
    probes = [record_dict(k, {**dict.fromkeys(METRICS, 0.0), **partials.records[k]}) for k in keys]
    _, problems = validate_records(probes)
    named = [
        Problem(p.index, p.field, f"{keys[p.index][0]} at {iso_ms(keys[p.index][1])}: {p.field} {p.message}")
        for p in problems
    ]
    named += [
        Problem(None, "server_name", f"a {metric} series has none of the labels {settings.TFT_PROTOCOL_SERVER_LABELS}")
        for metric in partials.unnamed
    ]
    return named
