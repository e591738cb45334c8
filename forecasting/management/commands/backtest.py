"""python manage.py backtest — rolling-origin backtest of the TFT against the baselines.

Sources (one of):
  (default)              database servers' 5-minute rollups (``--servers`` to select)
  --csv-dir DIR          NAB layout (timestamp,value; mapped onto --metric) or contract-shaped CSVs
                         (repeatable: the folders are scored together; --exclude GLOB, repeatable,
                         leaves files out)
  --simulated N          N simulated servers over --days D with --seed S (also reports lead times
                         before critical incidents)
Model: --model PATH (default: the newest models/tft_model_* folder), --no-tft for baselines only.
Output: one table, or --json: {"methods": {"tft": {"mase", "pinball", "coverage", "windows"},
"tft_calibrated": …, …}} (with --simulated the JSON also holds "lead_time"). With the TFT it also
holds "calibration" (raw vs self-calibrated intervals per series family and pooled) and
"probabilities" (Brier, skill and reliability of prob_30m / prob_8h per event rule; a CSV folder's
anomaly_windows.json adds the "anomaly" rule; events per engine.incidents: "threshold", "reported",
"incident" = either) with, per event and window, a "served" entry: what serving gives (the folder's
event model, else its recalibrated bound, through the live fleet / profile maps replayed online, each
--csv-dir and each simulated fleet a fleet of its own), "event_model" (or "prior": the folder's
probability alone) and "bound" (the method before the event model), families weighted equally, each
with "per_family". --probability-every STEPS sets the stride of their origins (default hourly).
--fit-probabilities first fits the isotonic probability recalibration on the training part and writes
it into the model folder; --fit-event-model fits the event model (engine.event_model) on the training
part and writes event_model.json (the way to give an existing folder one without retraining the TFT).
"alerts" (unless --no-alerts): the alert replay of engine.alert_replay — per family and pooled,
per rule (served, static_threshold, predict_linear, served_p50, and incident_prob when the TFT's
folder has an event model: its P(incident within 8 h) >= --alert-prob-tau, raised to --alert-prob-lift
× the series' own incident base rate, one alert per series):
recall_15m, median_lead_minutes, false_alerts_per_server_day, alert_minutes_per_server_day, incidents.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from forecasting.alerts.selectors import alert_hysteresis, alert_trend, early_warning_steps, incident_hysteresis
from forecasting.engine import alert_replay, event_training, incidents
from forecasting.engine import backtest as bt
from forecasting.engine.alert_rules import PROB_SOURCES, SEVERITIES, Hysteresis
from forecasting.engine.folders import (
    read_blend,
    read_event_model,
    read_probability_calibration,
    write_event_model,
    write_probability_calibration,
)
from forecasting.engine.heuristic import heuristic_quantiles
from forecasting.engine.network import load_forecaster
from forecasting.engine.series import SeriesWindow, load_csv_dir
from forecasting.engine.simulator import FleetTruth, fleet_names, simulate_fleet_truth
from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, HORIZON, METRICS, QUANTILES, STEP_MINUTES
from forecasting.scoring.probabilities import live_map_config
from forecasting.windows import server_histories

logger = logging.getLogger(__name__)

SIMULATION_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; fixed so runs are reproducible


def newest_model_folder(models_dir: Path) -> Path | None:
    folders = sorted(p for p in Path(models_dir).glob("tft_model_*") if p.is_dir())
    return folders[-1] if folders else None


def _learner(text: str) -> str:
    """--learner: a learner spec the event training accepts; argparse reports what is wrong with it."""
    try:
        event_training.learner_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


class Command(BaseCommand):
    help = "Backtest the TFT and the baselines (naive, seasonal naive, predict_linear, mean) on rolling origins."

    def add_arguments(self, parser):
        # --csv-dir and --simulated together score (and fit on) both sources as one set.
        parser.add_argument(
            "--csv-dir",
            type=Path,
            action="append",
            help="folder of CSVs (NAB timestamp,value or contract records); repeatable: scored together",
        )
        parser.add_argument("--simulated", type=int, metavar="N", help="backtest on N simulated servers")
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="GLOB",
            help="with --csv-dir: leave out CSV files whose name matches (repeatable)",
        )
        parser.add_argument("--servers", nargs="*", help="database servers to use (default: all)")
        parser.add_argument(
            "--metric",
            default="auto",
            choices=["auto", *METRICS],
            help="metric NAB values map onto (auto: cpu → cpu_pct, latency → latency_ms, others → disk_io_mb_s)",
        )
        parser.add_argument("--metrics", nargs="*", choices=METRICS, help="metrics to score (default all)")
        parser.add_argument("--days", type=float, default=14.0, help="simulated days (with --simulated)")
        parser.add_argument("--seed", type=int, default=1000, help="simulator seed (with --simulated)")
        parser.add_argument(
            "--no-incidents", action="store_true", help="with --simulated: inject no incidents (a quiet fleet)"
        )
        parser.add_argument("--model", type=Path, help="model folder (default: newest models/tft_model_*)")
        parser.add_argument("--no-tft", action="store_true", help="baselines only")
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        parser.add_argument("--per-metric", action="store_true", help="also print scores per metric")
        parser.add_argument("--no-lead-time", action="store_true", help="skip the lead-time evaluation")
        parser.add_argument(
            "--no-probabilities", action="store_true", help="skip the incident-probability reliability (TFT only)"
        )
        parser.add_argument(
            "--fit-probabilities",
            action="store_true",
            help="fit the probability recalibration on the training part of the series and write it into the "
            "model folder (probability_calibration.json) before evaluating",
        )
        parser.add_argument(
            "--fit-windows",
            nargs="+",
            choices=list(bt.PROB_WINDOWS),
            default=list(bt.PROB_WINDOWS),
            help="with --fit-probabilities: the windows to recalibrate (the others are served raw)",
        )
        parser.add_argument(
            "--blend-strength",
            type=float,
            help="override the online move of the model folder's blend.json (choosing it on development series)",
        )
        parser.add_argument("--no-blend", action="store_true", help="serve the TFT alone (ignore blend.json)")
        parser.add_argument(
            "--fit-event-model",
            action="store_true",
            help="fit the event model (P(incident starts within 30 min / 8 h)) on the training part of the series "
            "and write it into the model folder (event_model.json) before evaluating",
        )
        parser.add_argument(
            "--learner",
            type=_learner,
            default=event_training.DEFAULT_LEARNER,
            help="with --fit-event-model: the learner, logistic, trees, blend (of the two) or isotonic, optionally "
            "with options, e.g. 'blend(l2=30,depth=2,leaf=200)' (default: the one that won on held-out series)",
        )
        parser.add_argument(
            "--min-buckets",
            type=int,
            default=incidents.DEFAULT_MIN_BUCKETS,
            help="a threshold incident lasts at least this many 5-minute buckets (TFT_INCIDENT_MIN_BUCKETS)",
        )
        parser.add_argument(
            "--no-event-model",
            action="store_true",
            help="score the bound as served even if the folder has an event model",
        )
        parser.add_argument(
            "--probabilities-only",
            action="store_true",
            help="only the incident-probability evaluation (no interval scores, no lead times)",
        )
        parser.add_argument(
            "--probability-every",
            type=int,
            default=bt.PROB_EVERY,
            metavar="STEPS",
            help="incident probabilities: steps between origins (default 12 = hourly)",
        )
        parser.add_argument("--json", action="store_true", help="print the result as JSON only")
        parser.add_argument("--no-alerts", action="store_true", help="skip the alert replay")
        parser.add_argument(
            "--no-alert-trend", action="store_true",
            help="alert replay: serve the forecast rules without the trend rule (TFT_ALERT_TREND_* set it otherwise)",
        )  # fmt: skip
        parser.add_argument(
            "--alert-every",
            type=int,
            default=alert_replay.REPLAY_EVERY,
            metavar="STEPS",
            help="alert replay: steps between origins (1 = every 5 minutes, as live; K and M count origins)",
        )
        parser.add_argument(
            "--alert-frontier", action="store_true",
            help="alert replay: also replay every K / M of engine.alert_replay.FRONTIER (choose on development series)",
        )
        parser.add_argument(
            "--alert-prob-tau",
            type=float,
            default=settings.TFT_ALERT_INCIDENT_PROB_TAU,
            metavar="P",
            help="alert replay, rule incident_prob: the event model's P(incident within 8 h) that predicts an alert",
        )
        parser.add_argument(
            "--alert-prob-taus",
            type=float,
            nargs="+",
            default=list(alert_replay.PROB_TAUS),
            metavar="P",
            help="alert replay: the thresholds of incident_prob that --alert-frontier sweeps",
        )
        parser.add_argument(
            "--alert-prob-lift",
            type=float,
            default=settings.TFT_ALERT_INCIDENT_PROB_LIFT,
            metavar="L",
            help="alert replay, rule incident_prob: its threshold is at least L × the series' own incident base "
            "rate (0: --alert-prob-tau alone; engine.alert_rules.incident_prob_threshold)",
        )
        parser.add_argument(
            "--alert-prob-lifts",
            type=float,
            nargs="+",
            default=list(alert_replay.PROB_LIFTS),
            metavar="L",
            help="alert replay: the lifts --alert-frontier sweeps with each of --alert-prob-taus",
        )
        parser.add_argument(
            "--alert-prob-rise",
            type=float,
            default=settings.TFT_ALERT_INCIDENT_PROB_RISE,
            metavar="R",
            help="alert replay, rule incident_prob: its threshold is also at least R × the series' mean P over "
            "the previous day, and it waits for 6 h of that (0: no such term)",
        )
        parser.add_argument(
            "--alert-prob-rises",
            type=float,
            nargs="+",
            default=[settings.TFT_ALERT_INCIDENT_PROB_RISE],
            metavar="R",
            help="alert replay: the rises --alert-frontier sweeps with each tau and lift",
        )
        parser.add_argument(
            "--alert-prob-source",
            choices=PROB_SOURCES,
            default=settings.TFT_ALERT_INCIDENT_PROB_SOURCE,
            help="alert replay, rule incident_prob: the model's probability or the one served after the live map "
            "(replayed per fleet on its clock, as the probabilities' served); default TFT_ALERT_INCIDENT_PROB_SOURCE",
        )
        parser.add_argument(
            "--alert-prob-hysteresis",
            type=int,
            nargs=2,
            metavar=("K", "M"),
            help="alert replay, rule incident_prob: origins before its alert opens / resolves (default: the "
            "served TFT_ALERT_INCIDENT_OPEN_AFTER / _RESOLVE_AFTER forecasts at the replay's stride)",
        )
        parser.add_argument(
            "--alert-early-warnings",
            type=int,
            nargs="+",
            metavar="MINUTES",
            help="alert replay: also replay the forecast rules with the p90 early warning reaching only this "
            "far ahead (alone and served with incident_prob; to choose TFT_ALERT_EARLY_WARNING_MINUTES)",
        )
        parser.add_argument(
            "--open-after",
            type=int,
            nargs=2,
            metavar=("WARNING", "CRITICAL"),
            help="alert replay: runs before an alert opens (default: the served settings)",
        )
        parser.add_argument(
            "--resolve-after",
            type=int,
            nargs=2,
            metavar=("WARNING", "CRITICAL"),
            help="alert replay: runs without a prediction before it resolves (default: the served settings)",
        )

    def handle(self, *args, **opts):
        started = time.perf_counter()
        if opts["json"]:  # keep stdout pure JSON (the log handler may write to stdout)
            logging.getLogger("forecasting").setLevel(logging.WARNING)
        forecaster = None if opts["no_tft"] else self._forecaster(opts)
        source = _series_source(opts)
        blend = self._blend(forecaster, opts)
        result = {"methods": {}, "per_family": {}}
        if not opts["probabilities_only"]:
            result = bt.run_backtest(
                source.series, forecaster, metrics=source.metrics, per_metric=opts["per_metric"], blend=blend
            )
        if blend is not None:
            result["blend"] = {k: blend.get(k) for k in ("weights", "per_metric", "strength", "ramp", "fitted_on")}
        if source.truth is not None and not (opts["no_lead_time"] or opts["probabilities_only"]):
            result["lead_time"] = bt.lead_time_evaluation(source.truth.windows, source.truth.episodes, forecaster)
        if forecaster is not None and opts["fit_probabilities"]:
            self._fit_probabilities(source, forecaster, opts["fit_windows"])
        if forecaster is not None and opts["fit_event_model"]:
            self._fit_event_model(source, forecaster, opts)
        if forecaster is not None and not opts["no_probabilities"]:
            result["probabilities"] = bt.probability_evaluation(
                source.series,
                forecaster,
                metrics=source.metrics,
                anomalies=source.anomalies,
                recalibration=read_probability_calibration(self.model_path),
                event_model=None if opts["no_event_model"] else read_event_model(self.model_path),
                min_buckets=opts["min_buckets"],
                fleets=source.fleets,
                live=live_map_config(),
                every=opts["probability_every"],
                blend=blend,
            )
        if not (opts["no_alerts"] or opts["probabilities_only"]):
            result["alerts"] = _alert_replay(source, forecaster, opts, getattr(self, "model_path", None))
        if opts["json"]:
            self.stdout.write(json.dumps(_jsonable(result), indent=2))
            return
        self._report(source, forecaster, result, time.perf_counter() - started)

    def _report(self, source: BacktestSource, forecaster, result: dict, elapsed: float) -> None:
        self.stdout.write(
            f"Backtest on {source.name}: {len(source.series)} series, horizon {HORIZON}, context {CONTEXT}"
        )
        if forecaster is not None:
            self.stdout.write(f"TFT: {getattr(forecaster, 'version', '?')}")
        _band_tables(self.stdout.write, result)
        self.stdout.write("\nPooled by windows (secondary):")
        self._table(result["methods"])
        if len(result.get("per_family", {})) > 1 and not result.get("per_band_family"):
            for family, by_method in result["per_family"].items():
                self.stdout.write(f"\nfamily {family}:")
                self._table(by_method)
        if "calibration" in result:
            self._calibration_table(result["calibration"])
        for method, by_metric in result.get("per_metric", {}).items():
            self.stdout.write(f"\n{method}:")
            self._table(by_metric, label="metric")
        if "lead_time" in result:
            self._lead_table(result["lead_time"])
        if "probabilities" in result:
            self._probability_table(result["probabilities"])
        if "alerts" in result:
            self._alerts_table(result["alerts"])
        self.stdout.write(f"\n({elapsed:.1f}s)")

    def _blend(self, forecaster, opts) -> dict | None:
        if forecaster is None or opts["no_blend"]:
            return None
        blend = read_blend(self.model_path)
        if blend is not None and opts["blend_strength"] is not None:
            blend["strength"] = opts["blend_strength"]
        return blend

    def _fit_probabilities(self, source: BacktestSource, forecaster, windows: list[str]) -> None:
        fitted = bt.fit_probability_recalibration(source.series, forecaster, metrics=source.metrics)
        fitted["windows"] = {w: t for w, t in fitted["windows"].items() if w in windows}
        fitted["fitted_on"] = source.name
        write_probability_calibration(self.model_path, fitted)
        logger.info("probability recalibration written", extra={"folder": str(self.model_path), "windows": windows})

    def _fit_event_model(self, source: BacktestSource, forecaster, opts: dict) -> None:
        cfg = event_training.SampleConfig(min_buckets=opts["min_buckets"], blend=self._blend(forecaster, opts))
        data = event_training.event_samples(source.series, forecaster, metrics=source.metrics, part="train", cfg=cfg)
        if not len(data["series"]):
            raise CommandError("no training-part origins to fit the event model on (series too short)")
        model = event_training.fit_event_model(
            data, learner=opts["learner"], cfg=cfg, meta={"fitted_on": f"training part (first 60 %) of {source.name}"}
        )
        write_event_model(self.model_path, model)
        logger.info("event model written", extra={"folder": str(self.model_path), "samples": model["samples"]})

    def _forecaster(self, opts):
        path = self.model_path = opts["model"] or newest_model_folder(settings.TFT_MODELS_DIR)
        if path is None:
            logger.warning("no models/tft_model_* folder: baselines only")
            return None
        try:
            return load_forecaster(path, device=opts["device"])
        except Exception as exc:
            raise CommandError(f"cannot load model {path}: {exc}") from exc

    def _alerts_table(self, report: dict) -> None:
        self.stdout.write(f"\nalert replay (every {report['protocol']['every_minutes']} min):")
        keys = (
            "recall_15m",
            "median_lead_minutes",
            "false_alerts_per_server_day",
            "alert_minutes_per_server_day",
            "incidents",
        )
        self.stdout.write(f"{'family / rule':34s}" + "".join(f"{k[:22]:>24s}" for k in keys))
        for family, rules in {**report["per_family"], "pooled": report["pooled"]}.items():
            for rule, row in rules.items():
                self.stdout.write(f"{family + ' / ' + rule:34s}" + "".join(f"{_fmt(row[k]):>24s}" for k in keys))

    def _table(self, rows: dict, label: str = "method") -> None:
        self.stdout.write(f"{label:<16}{'MASE':>8}{'pinball':>10}{'coverage':>10}{'windows':>9}")
        for name, r in rows.items():
            self.stdout.write(
                f"{name:<16}{_fmt(r['mase']):>8}{_fmt(r['pinball']):>10}{_fmt(r['coverage']):>10}{r['windows']:>9}"
            )

    def _calibration_table(self, report: dict) -> None:
        gammas = ", ".join(f"{g:g}" for g in report["gammas"])
        self.stdout.write(f"\nTFT intervals raw → calibrated (adaptive conformal, γ per band = {gammas}):")
        self.stdout.write(f"{'family':<18}{'coverage':>18}{'pinball':>18}{'windows':>9}")
        rows = {**report["families"], "pooled": report["pooled"]}
        for name, r in rows.items():
            raw, served = r["raw"], r["calibrated"]
            self.stdout.write(
                f"{name:<18}{_fmt(raw['coverage']) + ' → ' + _fmt(served['coverage']):>18}"
                f"{_fmt(raw['pinball']) + ' → ' + _fmt(served['pinball']):>18}{raw['windows']:>9}"
            )

    def _probability_table(self, report: dict) -> None:
        self.stdout.write(
            f"\nIncident probabilities ({report['origins']} origins, every {report['every_minutes']} min; "
            f"served: {report['served_by']}; 'served' pools families equally):"
        )
        self.stdout.write(f"{'event':<11}{'window':<8}{'probs':<14}{'events':>8}{'base':>8}{'mean p':>8}"
                          f"{'Brier':>8}{'skill':>8}{'AUC':>7}")  # fmt: skip
        for rule in (*incidents.KINDS, "anomaly"):
            for window, kinds in report.get(rule, {}).items():
                for kind, r in kinds.items():
                    self._probability_row(rule, window, kind, r)
                    for family, f in kinds[kind].get("per_family", {}).items():
                        self._probability_row("", "", f"  {family}", f)

    def _probability_row(self, rule: str, window: str, kind: str, r: dict) -> None:
        if not r.get("n"):
            return
        self.stdout.write(
            f"{rule:<11}{window:<8}{kind:<14}{r['events']:>8}{_fmt(r['base_rate']):>8}"
            f"{_fmt(r['mean_prob']):>8}{_fmt(r['brier']):>8}{_fmt(r['skill']):>8}{_fmt(r['auc'], 2):>7}"
        )

    def _lead_table(self, lead: dict) -> None:
        self.stdout.write(
            f"\nLead time before critical_issue (p90 of cpu/mem ≥ {lead['threshold']:g}, forecasts up to "
            f"{lead['lookback_minutes']} min ahead; {lead['episodes']} episodes):"
        )
        self.stdout.write(f"{'method':<16}{'detected':>10}{'w/ precursor':>14}{'median lead':>13}{'false alarms':>14}")
        for name, r in lead["methods"].items():
            self.stdout.write(
                f"{name:<16}{_fmt(r['detection_rate'], 2):>10}{_fmt(r['detection_rate_with_precursor'], 2):>14}"
                f"{_fmt(r['median_lead_minutes'], 0) + ' min':>13}{_fmt(r['false_alarm_rate'], 3):>14}"
            )


@dataclass
class BacktestSource:
    name: str
    series: list[SeriesWindow]
    metrics: list[str] | dict[str, str | Sequence[str]] | None = None  # what to score (per server for NAB files)
    truth: FleetTruth | None = None  # a simulated fleet's episodes, for the lead times
    anomalies: dict[str, list[tuple[datetime, datetime]]] | None = None  # labelled anomaly windows per series
    fleets: dict[str, str] | None = None  # series → the fleet it is replayed in (its --csv-dir, its simulated fleet)


def _csv_source(opts: dict) -> BacktestSource:
    series: list[SeriesWindow] = []
    metric_of: dict[str, str] = {}
    anomalies: dict[str, list[tuple[datetime, datetime]]] = {}
    fleets: dict[str, str] = {}
    for folder in opts["csv_dir"]:
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        try:
            loaded = load_csv_dir(folder, metric=opts["metric"], exclude=opts["exclude"])
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        series += loaded.series
        fleets.update({w.server: str(folder) for w in loaded.series})
        metric_of.update(loaded.metric_of)
        anomalies.update(_anomaly_windows(folder) or {})
    metrics = opts["metrics"] or None
    if metric_of and metrics is None:
        metrics = {w.server: metric_of.get(w.server, METRICS) for w in series}
    name = "csv " + " + ".join(str(f) for f in opts["csv_dir"])
    return BacktestSource(name, series, metrics, anomalies=anomalies or None, fleets=fleets)


def _anomaly_windows(folder: Path) -> dict[str, list[tuple[datetime, datetime]]] | None:
    """NAB's labelled anomaly windows of a folder (anomaly_windows.json: "family/file.csv" →
    [[start, end], …], naive UTC), keyed like the series (the file's stem); None without the file."""
    path = folder / "anomaly_windows.json"
    if not path.is_file():
        return None

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    labels = json.loads(path.read_text())
    return {Path(key).stem: [(at(a), at(b)) for a, b in spans] for key, spans in labels.items()}


def _simulated_source(opts: dict) -> BacktestSource:
    truth = simulate_fleet_truth(
        servers=fleet_names(opts["simulated"]),
        start=SIMULATION_START,
        end=SIMULATION_START + timedelta(days=opts["days"]),
        seed=opts["seed"],
        incidents=not opts.get("no_incidents", False),
    )
    quiet = ", no incidents" if opts.get("no_incidents") else ""
    name = f"simulated {opts['simulated']} servers × {opts['days']:g} days, seed {opts['seed']}{quiet}"
    return BacktestSource(name, truth.windows, opts["metrics"] or None, truth, fleets={w.server: name for w in truth.windows})


def _combined(csv: BacktestSource, simulated: BacktestSource) -> BacktestSource:
    """Both sources as one set: each series keeps the metrics its own source scores."""
    names = [w.server for w in csv.series + simulated.series]
    if len(set(names)) != len(names):
        raise CommandError("a CSV series has the name of a simulated server: rename the file")

    def metrics_of(source: BacktestSource) -> dict:
        m = source.metrics
        return dict(m) if isinstance(m, dict) else {w.server: m or METRICS for w in source.series}

    return BacktestSource(
        f"{csv.name} + {simulated.name}",
        csv.series + simulated.series,
        {**metrics_of(csv), **metrics_of(simulated)},
        simulated.truth,
        csv.anomalies,
        {**(csv.fleets or {}), **(simulated.fleets or {})},
    )


def _alert_replay(source: BacktestSource, forecaster, opts: dict, model_path: Path | None = None) -> dict:
    """The alert replay (engine.alert_replay) of the served rules with the served hysteresis (or
    --open-after / --resolve-after), the TFT's p50 / p90 or, without one, the heuristic fallback."""
    # The served K / M count 5-minute forecasts; at a stride of `every` steps they become
    # ceil(count / every) origins (the same time span). --open-after / --resolve-after count origins.
    every = opts["alert_every"]
    served = alert_hysteresis()
    hysteresis = Hysteresis(
        dict(zip(SEVERITIES, opts["open_after"], strict=True)) if opts["open_after"]
        else {k: -(-v // every) for k, v in served.open_after.items()},
        dict(zip(SEVERITIES, opts["resolve_after"], strict=True)) if opts["resolve_after"]
        else {k: -(-v // every) for k, v in served.resolve_after.items()},
    )
    if opts["alert_prob_hysteresis"]:
        k, m = opts["alert_prob_hysteresis"]
    else:
        own = incident_hysteresis()
        k, m = -(-own.open_after["critical"] // every), -(-own.resolve_after["critical"] // every)
    prob_hysteresis = Hysteresis(dict.fromkeys(SEVERITIES, k), dict.fromkeys(SEVERITIES, m))
    probability, serving, levels = None, None, QUANTILES
    if forecaster is not None:
        predict, levels = alert_replay.quantile_predictor(forecaster), tuple(forecaster.quantiles)
        # The forecast rules read the TFT forecast as the run serves it (blended, calibrated online);
        # incident_prob reads the folder's event model as the service serves it (no live map); the
        # service serves it for TFT forecasts only, so the heuristic replay has no such rule.
        event_model = None if opts["no_event_model"] else read_event_model(model_path)
        setup = bt.ProbabilitySetup(levels, DEFAULT_THRESHOLDS, event_model=event_model,
                                    min_buckets=opts["min_buckets"],
                                    blend=None if opts["no_blend"] else read_blend(model_path))  # fmt: skip
        serving = alert_replay.served_forecasts(setup)
        if event_model is not None:
            probability = alert_replay.event_probability(setup)
    else:
        predict = alert_replay.heuristic_predictor(heuristic_quantiles)
    metrics = source.metrics
    scored = {
        w.server: bt._metric_tuple(metrics.get(w.server) if isinstance(metrics, dict) else metrics)
        for w in source.series
    }
    mapped = isinstance(metrics, dict)
    simulated = {w.server for w in source.truth.windows} if source.truth is not None else set()
    served_early = early_warning_steps()
    early = tuple(-(-minutes // STEP_MINUTES) for minutes in opts["alert_early_warnings"] or ())

    def family_of(w: SeriesWindow, ms) -> str:
        # A simulated server is scored on all its metrics: it is its own family, not its first metric's.
        if w.server in simulated:
            return "simulated"
        return bt.series_family(w.server, None if mapped else ms[0])

    return alert_replay.alert_replay(
        source.series,
        predict,
        scored=scored,
        family_of=family_of,
        hysteresis=hysteresis,
        every=opts["alert_every"],
        frontier=alert_replay.FRONTIER if opts["alert_frontier"] else (),
        levels=levels,
        probability=probability,
        tau=opts["alert_prob_tau"],
        taus=opts["alert_prob_taus"],
        lift=opts["alert_prob_lift"],
        lifts=opts["alert_prob_lifts"],
        prob_hysteresis=prob_hysteresis,
        serve_prob=settings.TFT_ALERT_INCIDENT_PROB,
        prob_source=opts["alert_prob_source"],
        rise=opts["alert_prob_rise"],
        rises=opts["alert_prob_rises"],
        clocks=bt.fleet_clocks(source.series, source.fleets),
        live=live_map_config(),
        serving=serving,
        early_steps=early,
        early=served_early,
        forecast_source=settings.TFT_ALERT_FORECAST_SOURCE,
        trend=None if opts["no_alert_trend"] else alert_trend(),
    )


def _series_source(opts: dict) -> BacktestSource:
    if opts["csv_dir"] and opts["simulated"]:
        source = _combined(_csv_source(opts), _simulated_source(opts))
    elif opts["csv_dir"]:
        source = _csv_source(opts)
    elif opts["simulated"]:
        source = _simulated_source(opts)
    else:
        source = BacktestSource("database", server_histories(server_names=opts["servers"]), opts["metrics"] or None)
    if not source.series:
        raise CommandError(f"no series found ({source.name})")
    return source


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _band_tables(write, result: dict) -> None:
    """The lead tables: per horizon band, infrastructure families weighted equally (× naive, then
    coverage), then request volumes on their own, then each family."""
    headline = ", ".join(result.get("headline_families", []))
    _band_table(write, f"Families weighted equally, infrastructure ({headline})", result.get("per_band", {}))
    _band_table(write, "Request volumes", result.get("per_band_requests", {}))
    for family, bands in result.get("per_band_family", {}).items():
        _band_table(write, f"family {family}", bands)


def _band_table(write, title: str, bands: dict) -> None:
    if not any(bands.values()):
        return
    write(f"\n{title}: MASE × naive, pinball × naive, coverage per horizon band")
    write(f"{'method':<16}" + "".join(f"{band:>20}" for band in bands))
    methods = next(iter(v for v in bands.values() if v))
    for method in methods:
        cells = []
        for by_method in bands.values():
            r = by_method.get(method)
            ratios = (_fmt(r[k], 2) for k in ("mase_x_naive", "pinball_x_naive", "coverage")) if r else ("—",)
            cells.append(" ".join(ratios))
        write(f"{method:<16}" + "".join(f"{c:>20}" for c in cells))
