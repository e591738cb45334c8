"""The fleet simulator: deterministic, contract-valid, realistic states, forecastable incidents."""

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasting.engine.simulator import (
    fleet_names,
    fleet_stats,
    simulate_buckets,
    simulate_fleet_truth,
    simulate_records,
)
from forecasting.engine.spec import CRITICAL_PCT
from ingest.contract import METRICS, RECORD_FIELDS, STATES, profile_for

logger = logging.getLogger(__name__)

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
CRIT = STATES.index("critical_issue")
RECOVERY = STATES.index("recovery")


@pytest.fixture(scope="module")
def month():
    """40 servers × 30 days of bucket truth (fast: no records)."""
    return simulate_fleet_truth(servers=fleet_names(40), start=START, end=START + timedelta(days=30), seed=11)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_default_fleet_has_the_contract_families():
    names = fleet_names(20)
    assert len(names) == 20 == len(set(names))
    assert names[:4] == ["ppml0001", "ppml0002", "ppml0003", "ppml0004"]
    assert [n for n in names if n.startswith("ppdb")] == ["ppdb001", "ppdb002", "ppdb003"]
    assert [n for n in names if n.startswith("ppweb")] == [f"ppweb{i:03d}" for i in range(1, 9)]
    assert "ppcon01" in names and "ppetl002" in names and "pprisk002" in names
    assert {profile_for(n) for n in names} == {"ml_compute", "database", "web_api", "conductor", "etl", "risk"}


def test_any_fleet_size_gives_that_many_unique_names():
    for n in (1, 3, 6, 7, 40, 101):
        names = fleet_names(n)
        assert len(names) == n == len(set(names))


def test_same_seed_gives_identical_buckets():
    kwargs = dict(servers=fleet_names(6), start=START, end=START + timedelta(days=2))
    a = simulate_fleet_truth(seed=5, **kwargs)
    b = simulate_fleet_truth(seed=5, **kwargs)
    for wa, wb in zip(a.windows, b.windows, strict=True):
        np.testing.assert_array_equal(wa.values, wb.values)
        np.testing.assert_array_equal(wa.states, wb.states)
    assert a.episodes == b.episodes


def test_same_seed_gives_identical_records():
    kwargs = dict(servers=fleet_names(4), start=START, end=START + timedelta(hours=1), seed=3)
    assert list(simulate_records(**kwargs)) == list(simulate_records(**kwargs))


def test_different_seed_gives_different_series():
    kwargs = dict(servers=["ppweb001"], start=START, end=START + timedelta(days=1))
    a = simulate_buckets(seed=1, **kwargs)[0]
    b = simulate_buckets(seed=2, **kwargs)[0]
    assert not np.array_equal(a.values, b.values)


def test_server_series_does_not_depend_on_the_rest_of_the_fleet():
    kwargs = dict(start=START, end=START + timedelta(days=1), seed=4)
    alone = simulate_buckets(servers=["ppdb002"], **kwargs)[0]
    in_fleet = next(w for w in simulate_buckets(servers=fleet_names(20), **kwargs) if w.server == "ppdb002")
    np.testing.assert_array_equal(alone.values, in_fleet.values)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate_buckets(servers=["ppweb001"], start=datetime(2026, 1, 1), end=START)  # noqa: DTZ001


def test_windows_are_series_windows_on_the_bucket_grid():
    from forecasting.engine.series import SeriesWindow

    windows = simulate_buckets(
        servers=fleet_names(3), start=START + timedelta(minutes=2), end=START + timedelta(hours=2)
    )
    for w in windows:
        assert isinstance(w, SeriesWindow)
        assert w.start == START and w.step_minutes == 5
        assert w.values.shape == (24, 4) and w.values.dtype == np.float32
        assert w.states.dtype == np.int8 and w.profile == profile_for(w.server)


def test_every_record_satisfies_the_contract():
    servers = fleet_names(20)
    n = 0
    for batch in simulate_records(
        servers=servers, start=START, end=START + timedelta(days=3), interval_seconds=60, seed=7
    ):
        assert [r["server_name"] for r in batch] == servers
        assert len({r["timestamp"] for r in batch}) == 1
        for r in batch:
            assert tuple(r) == RECORD_FIELDS
            assert r["timestamp"].endswith("Z") and _parse(r["timestamp"]).tzinfo is not None
            assert 0.0 <= r["cpu_pct"] <= 100.0 and 0.0 <= r["mem_pct"] <= 100.0
            assert r["disk_io_mb_s"] >= 0.0 and r["latency_ms"] >= 0.0
            assert all(isinstance(r[m], float) for m in METRICS)
            assert r["state"] in STATES
            n += 1
    assert n == 20 * 3 * 24 * 60


def test_records_come_every_interval_from_start():
    batches = list(simulate_records(servers=["ppweb001"], start=START, end=START + timedelta(minutes=1), seed=0))
    stamps = [_parse(b[0]["timestamp"]) for b in batches]
    assert stamps == [START + timedelta(seconds=5 * i) for i in range(12)]


def test_states_dwell_for_minutes_to_hours(month):
    runs = defaultdict(list)
    for w in month.windows:
        cuts = np.flatnonzero(np.diff(w.states)) + 1
        for run in np.split(w.states, cuts)[1:-1]:  # skip runs cut by the range edges
            runs[STATES[int(run[0])]].append(5 * len(run))
    assert set(runs) == set(STATES)
    medians = {s: float(np.median(v)) for s, v in runs.items()}
    logger.info("median dwell minutes: %s", medians)
    for state, minutes in medians.items():
        assert 10 <= minutes <= 12 * 60, (state, minutes)
    assert max(medians.values()) >= 120  # the normal states last hours


def test_every_state_occurs_and_normal_states_dominate(month):
    stats = fleet_stats(month)
    share = stats["state_share"]
    assert all(share[s] > 0 for s in STATES)
    assert share["healthy"] + share["idle"] > 0.6
    assert share["critical_issue"] < 0.05


def test_most_critical_episodes_are_preceded_by_precursors(month):
    by_server = {w.server: w for w in month.windows}
    rising = 0
    for e in month.episodes:
        w = by_server[e.server]
        i0 = int((e.start - w.start).total_seconds() // 300)
        if e.precursor_start is None or e.precursor_minutes < 30:
            continue
        p0 = int((e.precursor_start - w.start).total_seconds() // 300)
        before = w.values[p0, :2].astype(float)
        at_onset = w.values[i0 - 1, :2].astype(float)
        latency_ratio = w.values[i0 - 1, 3] / max(w.values[p0, 3], 1e-3)
        if (at_onset - before).max() >= 15 or latency_ratio >= 2:
            rising += 1
    assert len(month.episodes) >= 100
    assert rising / len(month.episodes) >= 0.7


def test_critical_episodes_cross_the_threshold_and_end_in_recovery(month):
    by_server = {w.server: w for w in month.windows}
    for e in month.episodes:
        w = by_server[e.server]
        i0 = int((e.start - w.start).total_seconds() // 300)
        i1 = int((e.end - w.start).total_seconds() // 300)
        assert (w.states[i0:i1] == CRIT).all()
        assert w.values[i0:i1, :2].max() >= CRITICAL_PCT
        if i1 < len(w.states):
            assert w.states[i1] == RECOVERY


def test_critical_levels_are_rare_outside_incidents(month):
    high = outside = 0
    for w in month.windows:
        is_high = (w.values[:, :2] >= CRITICAL_PCT).any(axis=1)
        near = np.convolve(w.states == CRIT, np.ones(13), mode="same") > 0  # within an hour of one
        high += int(is_high.sum())
        outside += int((is_high & ~near).sum())
    assert outside <= 0.05 * high


def test_bucket_series_match_records_rolled_up():
    servers = fleet_names(8)
    start, end = START + timedelta(hours=7, seconds=30), START + timedelta(hours=13)
    sums = defaultdict(lambda: np.zeros(4))
    counts = defaultdict(int)
    states = defaultdict(set)
    for batch in simulate_records(servers=servers, start=start, end=end, seed=9):
        for r in batch:
            ts = _parse(r["timestamp"])
            bucket = ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0)
            key = (r["server_name"], bucket)
            sums[key] += [r[m] for m in METRICS]
            counts[key] += 1
            states[key].add(r["state"])
    windows = simulate_buckets(servers=servers, start=start, end=end, seed=9)
    for w in windows:
        for i in range(len(w.values)):
            key = (w.server, w.start + timedelta(minutes=5 * i))
            mean = sums[key] / counts[key]
            np.testing.assert_allclose(mean, w.values[i], atol=0.006, rtol=1e-5)
            assert states[key] == {STATES[w.states[i]]}
    assert counts[(servers[0], START + timedelta(hours=7))] == 54  # partial first bucket
    assert counts[(servers[0], START + timedelta(hours=8))] == 60


def test_simulating_a_fleet_month_takes_seconds():
    import time

    t0 = time.perf_counter()
    windows = simulate_buckets(servers=fleet_names(40), start=START, end=START + timedelta(days=30), seed=1)
    assert len(windows) == 40 and windows[0].values.shape == (30 * 288, 4)
    assert time.perf_counter() - t0 < 10


# --- the feeder command ------------------------------------------------------------------------


def test_duration_parsing():
    from forecasting.management.commands.simulate_fleet import parse_duration

    assert parse_duration("48h") == timedelta(hours=48)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("90") == timedelta(seconds=90)








def test_a_fleet_without_incidents_is_the_same_fleet_less_its_incidents():
    start = datetime(2026, 1, 5, tzinfo=UTC)
    kwargs = {"servers": fleet_names(6), "start": start, "end": start + timedelta(days=6), "seed": 4}
    noisy, quiet = simulate_fleet_truth(**kwargs), simulate_fleet_truth(**kwargs, incidents=False)
    assert noisy.episodes and not quiet.episodes
    critical = STATES.index("critical_issue")
    assert not any((w.states == critical).any() for w in quiet.windows)
    # buckets far from any incident are unchanged
    assert np.array_equal(noisy.windows[0].values[:12], quiet.windows[0].values[:12])
