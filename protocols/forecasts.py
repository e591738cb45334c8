"""Everything this app reads from the forecasting app, in one module (forecasting is being
re-organised: its module paths change here only). The current run's forecasts, as the API serves them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from forecasting.runs.selectors import current_run, served_forecasts

QUANTILE_KEYS = {"0.1": "p10", "0.5": "p50", "0.9": "p90"}
PROBABILITY_FIELDS = {"30m": "prob_30m", "8h": "prob_8h"}


@dataclass(frozen=True, slots=True)
class Forecast:
    server_name: str
    profile: str
    origin: datetime  # the first step's start; step i starts at origin + i × step
    payload: dict  # {metric: {"p10": [...], "p50": [...], "p90": [...]}}
    probabilities: dict[str, float]  # window → probability
    run_finished_at: datetime


def forecast_server_names() -> list[tuple[str, str]]:
    """(server, profile) of every forecast in the current run, by name."""
    run = current_run()
    if run is None:
        return []
    return list(
        served_forecasts().order_by("server__name").values_list("server__name", "server__profile")
    )


def current_forecasts(*, server_names: list[str]) -> list[Forecast]:
    """The current run's forecasts of these servers (servers without one are left out)."""
    run = current_run()
    if run is None or not server_names:
        return []
    rows = (
        served_forecasts().filter(server__name__in=server_names)
        .order_by("server__name")
        .values_list("server__name", "server__profile", "origin", "payload", "prob_30m", "prob_8h")
    )
    return [
        Forecast(name, profile, origin, json.loads(payload), {"30m": p30, "8h": p8h}, run.finished_at)
        for name, profile, origin, payload, p30, p8h in rows.iterator(chunk_size=200)
    ]
