"""The incident definition (engine.incidents) on hand-built series. No database."""

import numpy as np

from forecasting.engine import incidents
from forecasting.engine.spec import STATE_INDEX


def _col(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[:, None]


def test_one_bucket_at_the_limit_is_not_an_incident_two_are():
    one = _col([10, 10, 99, 10, 10, 10])
    two = _col([10, 10, 99, 99, 10, 10])
    crit = np.array([[95.0]])
    origin = np.array([1])
    assert not incidents.threshold_starts(one, crit, origin, 4, min_buckets=2)[0]
    assert incidents.threshold_starts(two, crit, origin, 4, min_buckets=2)[0]
    assert incidents.threshold_starts(one, crit, origin, 4, min_buckets=1)[0]


def test_incident_buckets_mark_whole_runs_only():
    marked = incidents.threshold_incident_buckets(np.array([99, 10, 99, 99, 99, 10, 99.0]), 95.0, 2)
    assert marked.tolist() == [False, False, True, True, True, False, False]


def test_a_run_starting_in_the_window_may_be_confirmed_after_it():
    y = _col([10, 10, 10, 99, 99, 10])
    crit = np.array([[95.0]])
    assert incidents.threshold_starts(y, crit, np.array([0]), 4, min_buckets=2)[0]  # starts at 3, confirmed at 4
    assert not incidents.threshold_starts(y, crit, np.array([0]), 3, min_buckets=2)[0]  # starts after the window


def test_an_incident_going_on_at_the_origin_does_not_start_in_the_window():
    y = _col([10, 99, 99, 99, 10, 10])
    assert not incidents.threshold_starts(y, np.array([[95.0]]), np.array([2]), 3, min_buckets=2)[0]


def test_a_run_cut_by_the_end_of_the_series_is_not_confirmed():
    y = _col([10, 10, 10, 99])
    assert not incidents.threshold_starts(y, np.array([[95.0]]), np.array([1]), 3, min_buckets=2)[0]


def test_each_origin_is_judged_against_its_own_limit_and_any_metric_counts():
    y = np.array([[10, 1], [10, 1], [50, 1], [50, 9], [10, 9]], dtype=np.float64)
    crit = np.array([[40.0, 100.0], [60.0, 5.0]])
    starts = incidents.threshold_starts(y, crit, np.array([1, 1]), 3, min_buckets=2)
    assert starts.tolist() == [True, True]  # cpu over 40 for the first; the second metric over 5 for the other
    crit_none = np.array([[60.0, 100.0]])
    assert not incidents.threshold_starts(y, crit_none, np.array([1]), 3, min_buckets=2)[0]


def test_reported_incidents_start_at_a_critical_state_after_a_non_critical_one():
    c, h, off = STATE_INDEX["critical_issue"], STATE_INDEX["healthy"], STATE_INDEX["offline"]
    states = np.array([h, h, c, c, h, off, off, h], dtype=np.int8)
    origins = np.array([0, 3, 4])
    assert incidents.reported_starts(states, origins, 3).tolist() == [True, False, False]
    with_offline = incidents.reported_starts(states, origins, 3, incident_states=incidents.REPORTED_STATES_WITH_OFFLINE)
    assert with_offline.tolist() == [True, True, True]


def test_labels_per_kind_and_window_and_either_kind():
    y = _col(np.full(200, 10.0))
    y[150:152] = 99.0
    states = np.full(200, STATE_INDEX["healthy"], dtype=np.int8)
    states[10:12] = STATE_INDEX["critical_issue"]
    origins = np.array([8, 60, 148])
    labels = incidents.incident_labels(y, states, np.full((3, 1), 95.0), origins)
    assert labels["threshold"]["30m"].tolist() == [False, False, True]
    assert labels["reported"]["30m"].tolist() == [True, False, False]
    assert labels["incident"]["30m"].tolist() == [True, False, True]
    assert labels["incident"]["8h"].tolist() == [True, True, True]  # 60 + 96 > 150
