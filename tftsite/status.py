"""GET /status, assembled here because it reads both apps: ingest's counters and warmup, and the
forecasting app's run and model. Neither app imports the other for it."""

from django.conf import settings

from forecasting.lifecycle.selectors import model_lifecycle
from forecasting.registry import active_model_version
from forecasting.runs.selectors import status_section
from forecasting.scoring.selectors import fleet_accuracy, probability_reliability
from ingest.selectors import Readiness, counters_totals, fleet_readiness, server_readiness_list


def _warmup_message(readiness: Readiness, predictions: dict | None) -> str:
    silent = f" ({readiness.silent} silent, counted out)" if readiness.silent else ""
    if readiness.tracked == 0:
        if readiness.silent:
            return (
                f"No data for {settings.TFT_SERVER_SILENT_AFTER_MINUTES} minutes: all {readiness.silent} servers silent"
            )
        return "Waiting for data: POST records to /feed/data"
    if not readiness.is_warmed_up:
        return f"Warming up: {readiness.ready}/{readiness.tracked} servers ready{silent}"
    if predictions and predictions.get("tft_servers"):
        return f"Model ready - using TFT predictions{silent}"
    if predictions:
        return (
            f"All {readiness.tracked} servers ready - heuristic predictions ({predictions['fallback_reasons']}){silent}"
        )
    return f"All {readiness.tracked} servers ready - waiting for the first prediction run{silent}"


def status_body(*, with_servers: bool = False, with_model: bool = False) -> dict:
    """The contract's status (running, tick_count, window_size, warmup) plus run and model sections.

    The model's training metrics (kilobytes of history) only with `with_model`: most callers poll
    /status for warmup and run age.
    """
    totals = counters_totals()
    readiness = fleet_readiness()
    threshold = settings.TFT_WARMUP_RECORDS
    forecasting = status_section()
    active = active_model_version()
    body = {
        "running": True,
        "tick_count": totals.batches,
        "window_size": totals.records,
        "servers_tracked": readiness.tracked,
        "servers_ready": readiness.ready,
        "servers_silent": readiness.silent,
        "silent_after_minutes": settings.TFT_SERVER_SILENT_AFTER_MINUTES,
        "step_minutes": settings.TFT_STEP_MINUTES,
        "warmup": {
            "is_warmed_up": readiness.is_warmed_up,
            "progress_percent": 100 if readiness.is_warmed_up else readiness.progress_percent,
            "threshold": threshold,
            "current_size": readiness.min_records,
            "required_size": threshold,
            "message": _warmup_message(readiness, forecasting.get("predictions")),
        },
        **forecasting,
        "accuracy": fleet_accuracy(raw_model=active.name if active else None),
        "probabilities": probability_reliability(),
    }
    body["model"] |= model_lifecycle(version=active)
    if not with_model:
        body["model"] = {key: value for key, value in body["model"].items() if key != "metrics"}
    if with_servers:
        body["servers"] = server_readiness_list()
    return body
