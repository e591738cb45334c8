"""The read API's series: which label sets a selector names, and their samples.

- tft_observed{server_name, metric, stat="mean"|"max"}: history from the 5-minute rollups, a sample
  at each bucket's start.
- tft_forecast{server_name, metric, quantile="0.1"|"0.5"|"0.9"}: the current run's forecast, a
  sample at the start of each 5-minute step, up to 8 h into the future.
- tft_incident_probability{server_name, window="30m"|"8h"}: the current run's probabilities, one
  sample at the run's end.
A query at time t sees the newest sample in (t − 5 min, t], Prometheus' default lookback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import product

from django.conf import settings

from ingest.contract import METRICS
from protocols.forecasts import PROBABILITY_FIELDS, QUANTILE_KEYS, current_forecasts, forecast_server_names
from protocols.promql import Matcher
from protocols.selectors import bucket_history, server_names

OBSERVED, FORECAST, PROBABILITY = "tft_observed", "tft_forecast", "tft_incident_probability"
LOOKBACK_SECONDS = 300.0
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    OBSERVED: {"metric": METRICS, "stat": ("mean", "max")},
    FORECAST: {"metric": METRICS, "quantile": tuple(QUANTILE_KEYS)},
    PROBABILITY: {"window": tuple(PROBABILITY_FIELDS)},
}
HELP = {
    OBSERVED: "Observed values: the mean or max of each 5-minute rollup bucket, at the bucket's start.",
    FORECAST: "The current forecast's quantile for each 5-minute step ahead, at the step's start.",
    PROBABILITY: "The current run's probability of an incident within the window, at the run's end.",
}
LABEL_NAMES = sorted({"__name__", "server_name", *(k for dims in FAMILIES.values() for k in dims)})


class TooManySamplesError(ValueError):
    pass


@dataclass(slots=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)  # (Unix seconds, value), ascending


def _matches(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels.get(m.label, "")) for m in matchers)


def _servers(family: str, matchers: list[Matcher]) -> list[str]:
    names = server_names() if family == OBSERVED else [name for name, _ in forecast_server_names()]
    server_matchers = [m for m in matchers if m.label == "server_name"]
    return [n for n in names if all(m.matches(n) for m in server_matchers)]


def series_labels(matchers: list[Matcher]) -> list[dict[str, str]]:
    """Every label set the matchers select (no samples loaded)."""
    out = []
    for family, dims in FAMILIES.items():
        if not _matches([m for m in matchers if m.label == "__name__"], {"__name__": family}):
            continue
        keys = list(dims)
        for server in _servers(family, matchers):
            for values in product(*(dims[k] for k in keys)):
                labels = {"__name__": family, "server_name": server, **dict(zip(keys, values, strict=True))}
                if _matches(matchers, labels):
                    out.append(labels)
    return out


def series_load(matchers: list[Matcher], *, start: datetime, end: datetime, steps: int) -> list[Series]:
    """The selected series with their samples in (start − lookback, end]."""
    selected = series_labels(matchers)
    if len(selected) * max(steps, 1) > settings.TFT_PROTOCOL_MAX_SAMPLES:
        raise TooManySamplesError(
            f"{len(selected)} series × {steps} steps exceed TFT_PROTOCOL_MAX_SAMPLES "
            f"({settings.TFT_PROTOCOL_MAX_SAMPLES}); narrow the selector or widen the step"
        )
    observed_servers = {labels["server_name"] for labels in selected if labels["__name__"] == OBSERVED}
    buckets = (end - start).total_seconds() / (settings.TFT_STEP_MINUTES * 60) + 2
    if len(observed_servers) * buckets > settings.TFT_PROTOCOL_MAX_SAMPLES:  # rollup rows read, whatever the step
        raise TooManySamplesError(
            f"{len(observed_servers)} servers' history over {(end - start).total_seconds() / 3600:.0f} h is more than "
            f"TFT_PROTOCOL_MAX_SAMPLES ({settings.TFT_PROTOCOL_MAX_SAMPLES}) rollup buckets; narrow the selector or the range"
        )
    by_family: dict[str, list[Series]] = {}
    for labels in selected:
        by_family.setdefault(labels["__name__"], []).append(Series(labels))
    if OBSERVED in by_family:
        _observed(by_family[OBSERVED], start=start - timedelta(seconds=LOOKBACK_SECONDS), end=end)
    wanted = [s for f in (FORECAST, PROBABILITY) for s in by_family.get(f, [])]
    if wanted:
        _forecasts(wanted)
    return [s for family in by_family.values() for s in family]


def _observed(series: list[Series], *, start: datetime, end: datetime) -> None:
    history = bucket_history(server_names=sorted({s.labels["server_name"] for s in series}), start=start, end=end)
    for s in series:
        i = METRICS.index(s.labels["metric"])
        column = 2 + 2 * i + (1 if s.labels["stat"] == "max" else 0)  # (bucket_start, count, sum, max, …)
        for row in history.get(s.labels["server_name"], []):
            value = row[column] if s.labels["stat"] == "max" else row[column] / max(row[1], 1)
            s.points.append((row[0].timestamp(), value))


def _forecasts(series: list[Series]) -> None:
    forecasts = {
        f.server_name: f for f in current_forecasts(server_names=sorted({s.labels["server_name"] for s in series}))
    }
    step = settings.TFT_STEP_MINUTES * 60
    for s in series:
        forecast = forecasts.get(s.labels["server_name"])
        if forecast is None:
            continue
        if s.labels["__name__"] == PROBABILITY:
            s.points.append((forecast.run_finished_at.timestamp(), forecast.probabilities[s.labels["window"]]))
            continue
        values = forecast.payload.get(s.labels["metric"], {}).get(QUANTILE_KEYS[s.labels["quantile"]], [])
        origin = forecast.origin.timestamp()
        s.points.extend((origin + i * step, float(v)) for i, v in enumerate(values))


def value_at(points: list[tuple[float, float]], t: float, *, cursor: int = 0) -> tuple[float | None, int]:
    """The newest sample in (t − lookback, t], and where to resume for a later t (points ascending)."""
    while cursor < len(points) and points[cursor][0] <= t:
        cursor += 1
    if cursor and points[cursor - 1][0] > t - LOOKBACK_SECONDS:
        return points[cursor - 1][1], cursor
    return None, cursor
