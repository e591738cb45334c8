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
from ingest.validation import CleanRecord, Problem, validate_records

STATE_FIELD = "state"
STATE_SERIES = "tft:state"
_METRIC_SET = frozenset(METRICS)
_NO_INSTANCE_MAP = PullConfig(url="")

Key = tuple[str, int]  # (server_name, aligned Unix ms)
# Sample times we turn into records: after the Unix epoch (0 is OTLP's "unset") and before year 9999.
MIN_MS, MAX_MS = 1, 253_402_214_400_000


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


def _resolution() -> int:
    return settings.TFT_PROTOCOL_TIMESTAMP_RESOLUTION_MS


@dataclass(slots=True)
class Partials:
    """Samples gathered into (server, instant) → {metric or "state": value}, with the counts."""

    records: dict[Key, dict] = field(default_factory=dict)
    samples: int = 0  # samples that fed a record
    ignored: int = 0  # unmapped series, staleness markers
    unnamed: list[str] = field(default_factory=list)  # mapped series with no server label
    bad_times: list[int] = field(default_factory=list)  # sample times outside MIN_MS–MAX_MS (at most 20 kept)
    bad_time_count: int = 0
    resolution: int = field(default_factory=_resolution)  # read once: a settings lookup per sample is slow

    def add(self, server: str, ts_ms: int, name: str, value) -> None:
        if not MIN_MS <= ts_ms <= MAX_MS:
            self.bad_time_count += 1
            if len(self.bad_times) < 20:
                self.bad_times.append(ts_ms)
            return
        key = (server, ts_ms - ts_ms % self.resolution)
        values = self.records.get(key)
        if values is None:
            values = self.records[key] = {}
        values[name] = value
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
        if state and MIN_MS <= ts_ms <= MAX_MS:
            self.add(server, ts_ms, STATE_FIELD, state)
            self.samples -= 1  # the label rode on a sample already counted

    def add_series(self, *, metric: str, server: str | None, state: str | None, samples) -> None:
        """add_sample for every (ts_ms, value) of one series: the hot loop of a big write, inlined."""
        if server is None:
            if len(self.unnamed) < 20:
                self.unnamed.append(metric)
            return
        records, resolution, isfinite = self.records, self.resolution, math.isfinite
        used = 0
        for ts_ms, value in samples:
            if not isfinite(value):
                self.ignored += 1
                continue
            if not MIN_MS <= ts_ms <= MAX_MS:
                self.add(server, ts_ms, metric, value)  # counts and keeps the bad time
                continue
            key = (server, ts_ms - ts_ms % resolution)
            values = records.get(key)
            if values is None:
                values = records[key] = {}
            values[metric] = value
            if state:
                values[STATE_FIELD] = state
            used += 1
        self.samples += used

    def complete(self) -> tuple[dict[Key, dict], dict[Key, dict]]:
        """(records with all four metrics, records still missing some)."""
        full, partial = {}, {}
        for key, values in self.records.items():
            (full if all(m in values for m in METRICS) else partial)[key] = values
        return full, partial


def record_dict(key: Key, values: dict, *, default_state: str | None = None) -> dict:
    server, ts_ms = key
    return {
        "timestamp": iso_ms(ts_ms),
        "server_name": server,
        **{m: values[m] for m in METRICS},
        "state": values.get(STATE_FIELD) or default_state or settings.TFT_PROTOCOL_DEFAULT_STATE,
    }


def partials_validate(partials: Partials) -> tuple[list[Problem], dict[Key, CleanRecord]]:
    """The contract's problems with every (possibly partial) record, named by server and time, and
    the clean records of the complete ones (when there is no problem).

    A partial record is checked with its missing metrics set to 0 (valid for every metric), so the
    metrics and labels that did arrive are held to ingest.validation's rules, nothing else.
    """
    keys = sorted(partials.records)
    zeros = dict.fromkeys(METRICS, 0.0)
    default_state = settings.TFT_PROTOCOL_DEFAULT_STATE
    probes = [record_dict(k, {**zeros, **partials.records[k]}, default_state=default_state) for k in keys]
    clean, problems = validate_records(probes)
    named = [
        Problem(p.index, p.field, f"{keys[p.index][0]} at {iso_ms(keys[p.index][1])}: {p.field} {p.message}")
        for p in problems
    ]
    named += [
        Problem(None, "server_name", f"a {metric} series has none of the labels {settings.TFT_PROTOCOL_SERVER_LABELS}")
        for metric in partials.unnamed
    ]
    named += [
        Problem(None, "timestamp", f"sample time {ts} ms is not between 1970 and 9999") for ts in partials.bad_times
    ]
    if named:
        return named, {}
    complete = {
        k: record for k, record in zip(keys, clean, strict=True) if all(m in partials.records[k] for m in METRICS)
    }
    return named, complete


def partials_problems(partials: Partials) -> list[Problem]:
    return partials_validate(partials)[0]
