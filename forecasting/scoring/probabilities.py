"""Writes for the incident probabilities' live calibration (issue 22): the served probabilities kept
with their outcomes, and the recalibration maps learnt from them.

* The store step of a prediction chunk keeps the first probability served from each new origin, per
  server × window (`probability_outcomes_archive`), with the model's prior probability and the
  critical limits served at that origin: one INSERT … ON CONFLICT DO NOTHING.
* Each live-scoring pass resolves the oldest outcomes whose window has passed (at most
  TFT_PROBABILITY_MAX_PER_PASS, rows locked with SKIP LOCKED): the server's buckets after the
  origin (one query) say whether an incident started in the window — engine.incidents, the one
  definition: threshold incidents against the stored limits for TFT_INCIDENT_MIN_BUCKETS buckets,
  reported incidents from the buckets' states in TFT_INCIDENT_STATES. The `incident` marker moves
  from NULL by compare-and-swap in the same transaction that adds the outcomes to the maps, so an
  outcome is counted once however often a pass runs.
* The maps (engine.live_calibration): one per window for the fleet, starting at the identity over
  the model's probabilities (the trained map is the prior), and one per profile centred on the fleet's.
  `live_probabilities_apply` puts a chunk's probabilities through them before they are stored.
* Retention: outcomes older than TFT_SCORE_RETENTION_DAYS go with the score rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from forecasting.engine import live_calibration as lc
from forecasting.engine.event_model import history_keep
from forecasting.engine.incidents import WINDOWS, reported_starts, threshold_starts
from forecasting.engine.spec import STEP_MINUTES, TARGETS
from forecasting.models import IncidentHistory, ProbabilityCalibration, ProbabilityOutcome
from forecasting.windows import server_series_since, silenced_spans
from tftsite.bulk import objects_insert

logger = logging.getLogger(__name__)

_STEP = timedelta(minutes=STEP_MINUTES)
FLEET = lc.FLEET


def _now() -> datetime:
    return datetime.now(UTC)


# --- Serving: the maps and the archive (the store step of a prediction chunk) --------------------------


def live_map_config() -> lc.LiveMapConfig:
    """The live maps' settings (TFT_PROBABILITY_*), for the service and the backtest's replay."""
    return lc.LiveMapConfig(
        prior_weight=settings.TFT_PROBABILITY_PRIOR_WEIGHT,
        half_life_hours=settings.TFT_PROBABILITY_HALF_LIFE_HOURS,
        profile_min_outcomes=settings.TFT_PROBABILITY_PROFILE_MIN_OUTCOMES,
        slope_prior_factor=settings.TFT_PROBABILITY_SLOPE_PRIOR_FACTOR,
    )


def probability_maps() -> dict[str, dict[str, tuple[float, float]]]:
    """window → scope → (a, b) of the maps in force (engine.live_calibration.in_force): the fleet's,
    and each profile's that has TFT_PROBABILITY_PROFILE_MIN_OUTCOMES outcomes (others read the fleet's)."""
    cfg = live_map_config()
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for scope, window, a, b, outcomes in ProbabilityCalibration.objects.values_list(
        "scope", "window", "a", "b", "outcomes"
    ):
        if lc.in_force(scope, outcomes, cfg):
            out.setdefault(window, {})[scope] = (a, b)
    return out


def live_probabilities_apply(*, profiles: list[str], scored: list) -> dict[str, np.ndarray]:
    """Put each served forecast's prob_30m / prob_8h (the model's: the prior) through the live map
    of its profile (else the fleet's) in place; returns the priors per window, in order."""
    maps = probability_maps()
    priors = {"30m": np.array([s.prob_30m for s in scored], dtype=np.float64),
              "8h": np.array([s.prob_8h for s in scored], dtype=np.float64)}  # fmt: skip
    for window, attr in (("30m", "prob_30m"), ("8h", "prob_8h")):
        for i, (profile, s) in enumerate(zip(profiles, scored, strict=True)):
            served = lc.map_serve(priors[window][i], profile, maps.get(window, {}))
            if served is not None:
                setattr(s, attr, served)
    return priors


def probability_outcomes_archive(*, windows: list, priors: dict[str, np.ndarray], scored: list,
                                 now: datetime | None = None) -> int:  # fmt: skip
    """Keep each server's served probabilities (both windows) unless one from the same origin is kept
    already; with the critical limits served (from each forecast's summary)."""
    now = now or _now()
    rows = []
    for i, (sw, s) in enumerate(zip(windows, scored, strict=True)):
        critical = [s.summary[m]["critical"] for m in TARGETS]
        for window, served in (("30m", s.prob_30m), ("8h", s.prob_8h)):
            rows.append(ProbabilityOutcome(
                server_id=sw.server_id, window=window, origin=sw.window.end, profile=sw.window.profile,
                prob_prior=round(float(priors[window][i]), 6), prob_served=float(served), critical=critical,
                created_at=now,
            ))  # fmt: skip
    return objects_insert(model=ProbabilityOutcome, objs=rows, skip_existing=("server_id", "window", "origin"))


# --- Resolution pass ---------------------------------------------------------------------------------


def _due_filter() -> Q:
    """A window's outcome is known once the server's data covers the window and the buckets that
    confirm a threshold run started in its last bucket (min_buckets − 1 more)."""
    extra = settings.TFT_INCIDENT_MIN_BUCKETS - 1
    due = Q()
    for window, steps in WINDOWS.items():
        due |= Q(window=window, origin__lte=F("server__last_seen") - _STEP * (steps + extra))
    return due


@dataclass(frozen=True)
class _Due:
    ids: np.ndarray
    server_ids: np.ndarray
    windows: list[str]
    origins: list[datetime]
    profiles: list[str]
    priors: np.ndarray
    critical: np.ndarray  # (N, M)

    def subset(self, keep: np.ndarray) -> _Due:
        rows = np.flatnonzero(keep)
        return _Due(self.ids[rows], self.server_ids[rows], [self.windows[r] for r in rows],
                    [self.origins[r] for r in rows], [self.profiles[r] for r in rows], self.priors[rows],
                    self.critical[rows])  # fmt: skip


def _due_outcomes(limit: int) -> _Due | None:
    rows = list(
        ProbabilityOutcome.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(_due_filter(), incident__isnull=True)
        .order_by("origin", "pk")
        .values_list("pk", "server_id", "window", "origin", "profile", "prob_prior", "critical")[:limit]
    )
    if not rows:
        return None
    return _Due(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        server_ids=np.array([r[1] for r in rows], dtype=np.int64),
        windows=[r[2] for r in rows],
        origins=[r[3] for r in rows],
        profiles=[r[4] for r in rows],
        priors=np.array([r[5] for r in rows], dtype=np.float64),
        critical=np.array([[np.inf if v is None else v for v in r[6]] for r in rows], dtype=np.float64),
    )


def _silenced(due: _Due) -> np.ndarray:
    """(N,) does a silenced span (a maintenance window, or a bucket in state `maintenance`:
    forecasting.windows.silenced_spans) overlap the outcome's window? What happens inside a window
    is not evidence about the probability we served (an operator was working on the server)."""
    ends = [o + _STEP * WINDOWS[w] for o, w in zip(due.origins, due.windows, strict=True)]
    spans = silenced_spans(server_ids=np.unique(due.server_ids).tolist(), start=min(due.origins), end=max(ends))
    out = np.zeros(len(due.ids), dtype=bool)
    for i, (sid, origin, end) in enumerate(zip(due.server_ids.tolist(), due.origins, ends, strict=True)):
        out[i] = any(lo < end and hi > origin for lo, hi, _ in spans.get(sid, ()))
    return out


def _incidents(due: _Due) -> np.ndarray:
    """(N,) did an incident (engine.incidents) start within each due outcome's window?"""
    series = {sw.server_id: sw.window for sw in
              server_series_since(server_ids=np.unique(due.server_ids).tolist(), since=min(due.origins) - _STEP)}  # fmt: skip
    out = np.zeros(len(due.ids), dtype=bool)
    windows = np.array(due.windows)
    for server_id, w in series.items():
        for name, steps in WINDOWS.items():
            rows = np.flatnonzero((due.server_ids == server_id) & (windows == name))
            if not rows.size:
                continue
            origins = np.array([(due.origins[r] - w.start) // _STEP for r in rows], dtype=np.int64)
            threshold = threshold_starts(w.values, due.critical[rows], origins, steps,
                                         min_buckets=settings.TFT_INCIDENT_MIN_BUCKETS)  # fmt: skip
            reported = reported_starts(w.states, origins, steps, incident_states=settings.TFT_INCIDENT_STATES)
            out[rows] = threshold | reported
    return out


def _markers_move(due: _Due, incident: np.ndarray, now: datetime) -> bool:
    """Compare-and-swap every due outcome's marker from NULL to its outcome; False when another pass
    resolved any of them first."""
    moved = 0
    for value in (True, False):
        ids = due.ids[incident == value].tolist()
        if ids:
            moved += ProbabilityOutcome.objects.filter(pk__in=ids, incident__isnull=True).update(
                incident=value, resolved_at=now
            )
    return moved == len(due.ids)


def probability_maps_update(*, profiles: list[str], windows: list[str], priors: np.ndarray, incident: np.ndarray,
                            now: datetime | None = None) -> None:  # fmt: skip
    """Add outcomes to the fleet's and their profiles' maps (rows locked) and refit them
    (engine.live_calibration.fleet_pass: counts decay by the half-lives elapsed since the scope's
    last update, then the MAP fit; fleet: prior the identity; profile: prior the fleet's new map)."""
    now = now or _now()
    cfg = live_map_config()
    profiles_arr, windows_arr = np.array(profiles), np.array(windows)
    for window in sorted(set(windows)):
        sel = windows_arr == window
        scopes = [FLEET, *sorted(set(profiles_arr[sel].tolist()))]
        rows = {
            scope: ProbabilityCalibration.objects.select_for_update().get_or_create(
                scope=scope, window=window, defaults={"counts": lc.empty_counts(), "updated_at": now}
            )[0]
            for scope in scopes
        }
        states = {scope: lc.MapState(row.counts, (row.a, row.b), row.updated_at.timestamp())
                  for scope, row in rows.items()}  # fmt: skip
        updated = lc.fleet_pass(states, profiles_arr[sel], priors[sel], incident[sel], now_s=now.timestamp(), cfg=cfg)
        for scope, state in updated.items():
            row = rows[scope]
            row.counts, (row.a, row.b) = state.counts, state.params
            row.outcomes = round(state.outcomes, 3)
            row.events = round(float(np.sum(state.counts["events"])), 3)
            row.updated_at = now
            row.save()


def incident_histories_add(*, server_ids: np.ndarray, windows: list[str], incident: np.ndarray,
                           now: datetime) -> None:  # fmt: skip
    """Add resolved outcomes to their servers' incident histories (rows locked): each outcome stands
    for one bucket of origins (STEP_MINUTES); the sums decay by the half-lives since their last update."""
    hours_each = STEP_MINUTES / 60.0
    added: dict[tuple[int, str], list[float]] = {}
    for sid, window, hit in zip(server_ids.tolist(), windows, incident.tolist(), strict=True):
        total = added.setdefault((sid, window), [0.0, 0.0])
        total[0] += hours_each
        total[1] += hours_each * float(hit)
    # Rows first (a pass resolving the same server's other outcomes at the same time may create them
    # too: ignore_conflicts, then both add under the row lock), locked in one order (no deadlock).
    IncidentHistory.objects.bulk_create(
        [IncidentHistory(server_id=sid, window=window, updated_at=now) for sid, window in sorted(added)],
        ignore_conflicts=True, batch_size=1000,
    )  # fmt: skip
    rows = (IncidentHistory.objects.select_for_update().order_by("server_id", "window")
            .filter(server_id__in=sorted({sid for sid, _ in added})))  # fmt: skip
    changed = []
    for row in rows:
        if (row.server_id, row.window) not in added:
            continue
        hours, events = added[(row.server_id, row.window)]
        keep = history_keep((now - row.updated_at).total_seconds())
        row.hours, row.events_hours = row.hours * keep + hours, row.events_hours * keep + events
        row.updated_at = now
        changed.append(row)
    IncidentHistory.objects.bulk_update(changed, ["hours", "events_hours", "updated_at"], batch_size=1000)


@dataclass(frozen=True)
class OutcomePass:
    resolved: int
    incidents: int


def probability_outcomes_resolve(*, limit: int | None = None, now: datetime | None = None) -> OutcomePass:
    """Resolve the oldest due outcomes (at most `limit`, TFT_PROBABILITY_MAX_PER_PASS) and add them to
    the maps, in one transaction, all or nothing."""
    limit = limit or settings.TFT_PROBABILITY_MAX_PER_PASS
    now = now or _now()
    with transaction.atomic():
        due = _due_outcomes(limit)
        if due is None:
            return OutcomePass(0, 0)
        silenced = _silenced(due)
        if silenced.any():  # left out of the maps and the live scores: the rows go
            ProbabilityOutcome.objects.filter(pk__in=due.ids[silenced].tolist()).delete()
            if silenced.all():
                return OutcomePass(0, 0)
            due = due.subset(~silenced)
        incident = _incidents(due)
        if not _markers_move(due, incident, now):
            transaction.set_rollback(True)
            logger.info("probability outcomes skipped: another pass resolved them")
            return OutcomePass(0, 0)
        probability_maps_update(profiles=due.profiles, windows=due.windows, priors=due.priors,
                                incident=incident.astype(np.float64), now=now)  # fmt: skip
        incident_histories_add(server_ids=due.server_ids, windows=due.windows, incident=incident, now=now)
    result = OutcomePass(len(due.ids), int(incident.sum()))
    logger.info("probability outcomes resolved", extra=result.__dict__)
    return result


def probability_outcomes_prune(*, now: datetime | None = None) -> int:
    """Delete outcomes (resolved or never resolvable: their server went quiet) older than
    TFT_SCORE_RETENTION_DAYS."""
    cutoff = (now or _now()) - timedelta(days=settings.TFT_SCORE_RETENTION_DAYS)
    return ProbabilityOutcome.objects.filter(origin__lt=cutoff).delete()[0]
