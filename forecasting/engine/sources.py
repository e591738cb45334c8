"""Vendored real data sources without wall-clock dates (``data/azure_vm``, ``data/jumpstarter``,
``data/smd`` and their ``holdout_`` parts): what each file name means, and how a source is split.

* ``source_rule(name)``: the contract metric a file of a known source is read as, the factor that
  brings its values to that metric's unit, and the backtest family it is reported in. Percent-like
  values are kept in percent everywhere (SMD is released min-max scaled to [0, 1]: × 100, so its
  scale floors and clipping behave like every other percent series). A value that is not a
  contract metric (disk utilisation, network-in, JumpStarter's unnamed metrics) is read as the
  unbounded ``disk_io_mb_s``, like NAB's bytes and counts, so it is never clipped at 100.
* ``entity_of(name)`` / ``is_holdout(entity)``: the split BY ENTITY (a VM, a service, a machine: all
  files of one entity land on the same side): an entity is held out when the first 8 hex digits of
  sha1(entity id) modulo 100 are below ``HOLDOUT_PERCENT``. Stable across machines and Python runs.
* ``SOURCE_FILE``: a folder's ``SOURCE.json``; ``{"calendar": false}`` there says its timestamps
  are step counters from 2000-01-01, not dates, so calendar inputs are masked for its series.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

SOURCE_FILE = "SOURCE.json"
HOLDOUT_PERCENT = 35


@dataclass(frozen=True)
class SourceRule:
    metric: str  # the contract metric the value is read as
    factor: float  # multiply the file's value by this to get the metric's unit
    family: str  # the backtest family (cpu, memory, disk, network/requests, other)


# (file-name pattern, rule); the pattern's first group is the entity id.
_RULES: tuple[tuple[re.Pattern[str], SourceRule], ...] = (
    (re.compile(r"^(azure_vm_\d+)_period\w+_cpu$"), SourceRule("cpu_pct", 1.0, "cpu")),
    (re.compile(r"^(smd_machine-\d+-\d+)_m00$"), SourceRule("cpu_pct", 100.0, "cpu")),
    (re.compile(r"^(smd_machine-\d+-\d+)_m05$"), SourceRule("mem_pct", 100.0, "memory")),
    (re.compile(r"^(smd_machine-\d+-\d+)_m12$"), SourceRule("disk_io_mb_s", 100.0, "disk")),
    (re.compile(r"^(smd_machine-\d+-\d+)_m18$"), SourceRule("disk_io_mb_s", 100.0, "network/requests")),
    # JumpStarter does not name its metrics; m00 reaches 2,690 on two services (not a percent)
    (re.compile(r"^(js2_service\d+)_m(?:00|06)$"), SourceRule("disk_io_mb_s", 1.0, "other")),
)


def _strip(name: str) -> str:
    """A file name or stem without ``.csv`` / ``.csv.gz`` (and without a backtest ``#origin``)."""
    stem = name.split("#", 1)[0]
    for suffix in (".gz", ".csv"):
        stem = stem.removesuffix(suffix)
    return stem


def source_rule(name: str) -> SourceRule | None:
    """The rule for a file of a vendored source, from its name; None for any other file."""
    stem = _strip(name)
    for pattern, rule in _RULES:
        if pattern.match(stem):
            return rule
    return None


def entity_of(name: str) -> str | None:
    """The entity (VM, service, machine) a vendored source's file belongs to; None if unknown."""
    stem = _strip(name)
    for pattern, _ in _RULES:
        found = pattern.match(stem)
        if found:
            return found.group(1)
    return None


def is_holdout(entity: str) -> bool:
    """Whether an entity belongs to the held-out part of its source (about HOLDOUT_PERCENT %)."""
    return int(hashlib.sha1(entity.encode()).hexdigest()[:8], 16) % 100 < HOLDOUT_PERCENT


def folder_has_calendar(directory: Path) -> bool:
    """False when the folder's SOURCE.json says ``"calendar": false``; True otherwise (NAB, contract
    exports and any folder without the file carry real dates)."""
    meta = Path(directory) / SOURCE_FILE
    if not meta.is_file():
        return True
    return bool(json.loads(meta.read_text()).get("calendar", True))
