"""The vendored date-less sources (data/azure_vm, data/jumpstarter, data/smd and their holdout_
parts): gzip loading, the file-name → metric / unit / family map, the "no calendar" masking of the
network's inputs and the entity-wise split (engine only: no torch, no database)."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from forecasting.engine import inputs
from forecasting.engine.backtest import context_window, series_family
from forecasting.engine.series import csv_files, load_csv_dir, load_nab_csv, nab_metric_for
from forecasting.engine.sources import HOLDOUT_PERCENT, entity_of, is_holdout, source_rule
from forecasting.engine.spec import METRICS

DATA = Path(__file__).resolve().parents[3] / "data"
SOURCES = ("azure_vm", "jumpstarter", "smd")
ROWS = "timestamp,value\n2000-01-01 00:00:00,0.25\n2000-01-01 00:05:00,0.5\n2000-01-01 00:10:00,0.75\n"


def write_gz(path: Path, text: str) -> None:
    with gzip.open(path, "wt", newline="") as fh:
        fh.write(text)


# --- gzip --------------------------------------------------------------------------------------


def test_a_gzipped_csv_loads_like_the_plain_one(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "gz").mkdir()
    (tmp_path / "plain" / "ec2_cpu_utilization_x.csv").write_text(ROWS)
    write_gz(tmp_path / "gz" / "ec2_cpu_utilization_x.csv.gz", ROWS)
    plain, gz = load_csv_dir(tmp_path / "plain"), load_csv_dir(tmp_path / "gz")
    assert [w.server for w in gz.series] == ["ec2_cpu_utilization_x"]
    assert gz.metric_of == plain.metric_of == {"ec2_cpu_utilization_x": "cpu_pct"}
    np.testing.assert_array_equal(gz.series[0].values, plain.series[0].values)
    assert gz.series[0].start == plain.series[0].start


def test_csv_files_lists_both_kinds_and_excludes_by_series_name(tmp_path):
    (tmp_path / "a.csv").write_text(ROWS)
    write_gz(tmp_path / "b.csv.gz", ROWS)
    write_gz(tmp_path / "c.csv.gz", ROWS)
    (tmp_path / "notes.txt").write_text("not data")
    assert [f.name for f in csv_files(tmp_path)] == ["a.csv", "b.csv.gz", "c.csv.gz"]
    assert [f.name for f in csv_files(tmp_path, exclude=["c"])] == ["a.csv", "b.csv.gz"]


# --- names → metric, unit, family ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, metric, factor, family",
    [
        ("azure_vm_1061_period1h_cpu", "cpu_pct", 1.0, "cpu"),
        ("smd_machine-1-6_m00", "cpu_pct", 100.0, "cpu"),
        ("smd_machine-1-6_m05", "mem_pct", 100.0, "memory"),
        ("smd_machine-1-6_m12", "disk_io_mb_s", 100.0, "disk"),
        ("smd_machine-1-6_m18", "disk_io_mb_s", 100.0, "network/requests"),
        ("js2_service00_m00", "disk_io_mb_s", 1.0, "other"),
        ("js2_service00_m06", "disk_io_mb_s", 1.0, "other"),
    ],
)
def test_each_source_name_maps_to_a_metric_unit_and_family(name, metric, factor, family):
    assert nab_metric_for(name) == metric
    assert source_rule(f"{name}.csv.gz").factor == factor
    assert series_family(name) == family
    assert series_family(f"{name}#4032") == family  # a backtest context window's key


def test_nab_names_keep_their_mapping_and_family():
    assert source_rule("ec2_cpu_utilization_77c1ca") is None
    assert nab_metric_for("ec2_network_in_257a54") == "disk_io_mb_s"
    assert series_family("ec2_network_in_257a54") == "network/requests"
    assert series_family("machine_temperature_system_failure") == "other"


def test_smd_values_are_read_in_percent(tmp_path):
    write_gz(tmp_path / "smd_machine-9-9_m05.csv.gz", ROWS)
    window, metric = load_nab_csv(tmp_path / "smd_machine-9-9_m05.csv.gz")
    assert metric == "mem_pct"
    column = window.values[:, METRICS.index(metric)]
    np.testing.assert_allclose(column, [25.0, 50.0, 75.0])


def test_azure_values_are_kept_as_they_are(tmp_path):
    write_gz(tmp_path / "azure_vm_1_period24h_cpu.csv.gz", ROWS)
    window, _ = load_nab_csv(tmp_path / "azure_vm_1_period24h_cpu.csv.gz")
    np.testing.assert_allclose(window.values[:, METRICS.index("cpu_pct")], [0.25, 0.5, 0.75])


# --- no calendar ------------------------------------------------------------------------------


def test_source_json_without_calendar_marks_every_series(tmp_path):
    write_gz(tmp_path / "smd_machine-9-9_m00.csv.gz", ROWS)
    plain = load_csv_dir(tmp_path)
    (tmp_path / "SOURCE.json").write_text(json.dumps({"calendar": False}))
    dateless = load_csv_dir(tmp_path, fraction=0.7)
    assert plain.series[0].calendar is True
    assert dateless.series[0].calendar is False  # kept through head()
    assert context_window(dateless.series[0], 2).calendar is False


def test_every_vendored_folder_says_it_has_no_calendar():
    for source in SOURCES:
        for folder in (DATA / source, DATA / f"holdout_{source}"):
            meta = json.loads((folder / "SOURCE.json").read_text())
            assert meta["calendar"] is False, folder
    assert not (DATA / "nab" / "SOURCE.json").exists()


def _nab_window():
    window, _ = load_nab_csv(DATA / "nab" / "ec2_cpu_utilization_24ae8d.csv")
    return window


def _hour_weekday(x, part):
    return x[part][..., inputs.X_CATEGORICALS.index("hour")], x[part][..., inputs.X_CATEGORICALS.index("weekday")]


def test_a_dateless_window_reads_the_no_calendar_category_everywhere():
    nab = context_window(_nab_window(), 1000)
    dateless = context_window(_nab_window(), 1000)
    dateless.calendar = False
    x = inputs.build_inputs([nab, dateless], inputs.Vocab(servers=(inputs.UNKNOWN,)))
    enc_h, enc_d = _hour_weekday(x, "encoder_cat")
    dec_h, dec_d = _hour_weekday(x, "decoder_cat")
    assert set(enc_h[1].tolist()) == set(dec_h[1].tolist()) == {inputs.NO_HOUR}
    assert set(enc_d[1].tolist()) == set(dec_d[1].tolist()) == {inputs.NO_WEEKDAY}
    assert len(set(enc_h[0].tolist())) == 24  # the dated window keeps its hours
    for key in ("encoder_cont", "decoder_cont", "target_scale"):  # only the calendar differs
        np.testing.assert_array_equal(x[key][0], x[key][1])


def test_a_model_without_the_slot_reads_a_constant_calendar():
    old = inputs.Vocab.from_json({"servers": [inputs.UNKNOWN], "profiles": list(inputs.PROFILE_VOCAB),
                                  "states": list(inputs.STATE_VOCAB)})  # fmt: skip
    assert old.cardinalities["hour"] == 24 and old.cardinalities["weekday"] == 7
    w = context_window(_nab_window(), 1000)
    w.calendar = False
    x = inputs.build_inputs([w], old)
    assert set(_hour_weekday(x, "decoder_cat")[0][0].tolist()) == {0}
    assert set(_hour_weekday(x, "encoder_cat")[1][0].tolist()) == {0}


def test_a_new_vocab_has_the_slot_and_keeps_it_through_json():
    vocab = inputs.Vocab(servers=(inputs.UNKNOWN, "a"))
    assert vocab.cardinalities["hour"] == inputs.NO_HOUR + 1
    assert vocab.cardinalities["weekday"] == inputs.NO_WEEKDAY + 1
    assert inputs.Vocab.from_json(vocab.to_json()).calendar_slot is True


def test_inputs_of_a_nab_series_are_unchanged():
    """build_inputs for 4 context windows of a NAB file against what the code before the "no calendar"
    change (commit eda0bc7) built (nab_inputs_eda0bc7.npz, written by that commit's code): dated series
    must not move. Integers exactly; floats to float32 rounding, since numpy's vectorised transcendental
    functions may differ in the last bit between CPUs (a sha256 of the bytes written on one machine
    failed on another where eda0bc7's own code gives the same arrays as this one)."""
    w = _nab_window()
    windows = [context_window(w, o) for o in (1, 100, 2000, len(w.values))]
    x = inputs.build_inputs(windows, inputs.Vocab(servers=(inputs.UNKNOWN, w.server)))
    with np.load(Path(__file__).with_name("nab_inputs_eda0bc7.npz")) as before:
        assert sorted(before.files) == sorted(x)
        for key in before.files:
            assert x[key].dtype == before[key].dtype, key
            if np.issubdtype(before[key].dtype, np.integer):
                np.testing.assert_array_equal(x[key], before[key], err_msg=key)
            else:
                np.testing.assert_allclose(x[key], before[key], rtol=1e-6, atol=1e-6, err_msg=key)


# --- the split ----------------------------------------------------------------------------------


def test_entity_groups_every_file_of_one_vm_service_or_machine():
    assert entity_of("smd_machine-1-6_m00.csv.gz") == entity_of("smd_machine-1-6_m18") == "smd_machine-1-6"
    assert entity_of("js2_service07_m06.csv.gz") == "js2_service07"
    assert entity_of("azure_vm_1061_period1h_cpu.csv.gz") == "azure_vm_1061"
    assert entity_of("ec2_cpu_utilization_77c1ca.csv") is None


def test_the_split_rule_is_sha1_of_the_entity():
    for entity in ("smd_machine-1-6", "js2_service07", "azure_vm_1061"):
        expected = int(hashlib.sha1(entity.encode()).hexdigest()[:8], 16) % 100 < HOLDOUT_PERCENT
        assert is_holdout(entity) is expected


@pytest.mark.parametrize("source", SOURCES)
def test_vendored_folders_follow_the_rule_entity_by_entity(source):
    sides = {}
    for held, folder in ((False, DATA / source), (True, DATA / f"holdout_{source}")):
        assert (folder / "LICENSE.txt").is_file()
        for path in csv_files(folder):
            assert path.name.endswith(".csv.gz")
            entity = entity_of(path.name)
            assert is_holdout(entity) is held, path.name
            sides.setdefault(entity, set()).add(held)
    assert all(len(s) == 1 for s in sides.values())  # no entity on both sides
    held_share = sum(True in s for s in sides.values()) / len(sides)
    assert 0.2 <= held_share <= 0.5
