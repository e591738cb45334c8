"""The one table: every figure beside its target (issue 6) and the contract's figure."""

from __future__ import annotations


def _fmt(v, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, float | int):
        return f"{v:,.{digits}f}{unit}"
    return str(v)


def _mm(s: dict | None, unit: str = "", digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "—"
    return f"{_fmt(s['median'], unit, digits)} ({_fmt(s['min'], '', digits)}–{_fmt(s['max'], '', digits)})"


def _med(section: dict, key: str):
    return (section.get(key) or {}).get("median", "—")


def _ok(value, target, higher_is_better: bool) -> str:
    if value is None or target is None:
        return ""
    return "yes" if (value >= target if higher_is_better else value <= target) else "NO"


_SECTIONS = ("ingest", "predict", "read", "memory", "soak")


def rows(res: dict) -> list[tuple[str, str, str, str, str]]:
    """The report table's rows, section by section, for the sections the run has."""
    builders = {"ingest": _ingest_rows, "predict": _predict_rows, "read": _read_rows, "memory": _memory_rows,
                "soak": _soak_rows}
    out = []
    for section in _SECTIONS:
        if res.get(section):
            out += builders[section](res[section])
    return out


def _ingest_rows(ing: dict) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    b20, b1k, st, ceil = ing["batch20"], ing["batch1000"], ing["steady100"], ing.get("ceiling", {})
    errors = sum(ing[k]["errors"] for k in ("batch20", "batch1000", "batch20_onefleet", "steady100"))
    out += [
        ("ingest 1,000-rec batches: records/s", _mm(b1k["records_per_s"]), "≥ 50,000", "",
         _ok(b1k["records_per_s"]["median"], 50_000, True)),
        ("  p50 / p99 ms", f"{_mm(b1k['p50_ms'], '', 1)} / {_mm(b1k['p99_ms'], '', 1)}", "", "", ""),
        ("  CPU ms per request: web / postgres", f"{_med(b1k, 'web_cpu_ms_per_req')} / "
         f"{_med(b1k, 'pg_cpu_ms_per_req')}", "", "", ""),
        ("ingest 20-rec batches: requests/s", _mm(b20["rps"]), "≥ 500", "~100 req/s max",
         _ok(b20["rps"]["median"], 500, True)),
        ("  p50 / p99 ms (closed loop)", f"{_mm(b20['p50_ms'], '', 1)} / {_mm(b20['p99_ms'], '', 1)}", "", "", ""),
        ("  CPU ms per request: web / postgres (client)",
         f"{_med(b20, 'web_cpu_ms_per_req')} / {_med(b20, 'pg_cpu_ms_per_req')} "
         f"({_med(b20, 'client_cpu_share')} core)", "", "", ""),
        ("ingest 20-rec, one 20-server fleet: requests/s", _mm(ing["batch20_onefleet"]["rps"]), "", "", ""),
        ("ingest 20-rec at steady 100 req/s: p99 ms", _mm(st["p99_ms"], "", 1), "≤ 50", "",
         _ok(st["p99_ms"]["median"], 50, False)),
        ("ingest errors (all loads)", str(errors), "0", "", _ok(errors, 0, False)),
    ]
    if ceil:
        out += [
            ("Postgres COPY into ingest_metricrecord: rows/s", _mm(ceil["copy_rows_per_s"]), "", "", ""),
            ("Postgres INSERT ON CONFLICT, 1,000-row tx: rows/s", _mm(ceil["insert_rows_per_s"]), "", "", ""),
            ("  ingest / COPY, ingest / INSERT", f"{ceil.get('ratio_copy', '—')}, {ceil.get('ratio_insert', '—')}",
             "≈ 0.2 of COPY", "", _ok(ceil.get("ratio_copy"), 0.2, True)),
        ]
    inproc = ing.get("inprocess")
    if inproc:
        out.append(("  server time per 1,000 rec: parse/validate/store ms",
                    f"{inproc['parse_ms']['median']} / {inproc['validate_ms']['median']} / "
                    f"{inproc['store_ms']['median']}", "", "", ""))
    return out


def _predict_rows(pred: dict) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    model = pred.get("model", {}).get("name") or "heuristic fallback (no model)"
    targets = {20: 0.5, 1000: 10.0}
    for n, r in sorted(pred.get("cycles", {}).items(), key=lambda kv: int(kv[0])):
        n = int(n)
        phases = ", ".join(f"{p} {v['median']:.3f}" for p, v in r["phases_s"].items()
                           if r.get("tft") or p != "model (rest)")
        out.append((f"prediction cycle {n} servers: s", _mm(r["total_s"], "", 3), f"≤ {targets[n]}" if n in targets
                    else "", "3–5 s (20 servers)" if n == 20 else "", _ok(r["total_s"]["median"], targets.get(n), False)))
        out.append(("  phases s", phases, "", "", ""))
    if pred.get("scaling") is not None:
        out.append(("  cost per server, largest / 20 fleet", f"{pred['scaling']:.2f}", "≤ 1 (linear)", "",
                    _ok(pred["scaling"], 1.0, False)))
    out.append(("  model", model, "", "", ""))
    fw = pred.get("forward", {})
    if "windows_per_s" in fw:
        out.append(("forward pass (predict_array, 1,000 windows): windows/s", _mm(fw["windows_per_s"]), "≥ 1,000", "",
                    _ok(fw["windows_per_s"]["median"], 1000, True)))
    else:
        out.append(("forward pass: windows/s", fw.get("skipped", "—"), "≥ 1,000", "", ""))
    out.append(("prediction cycle 10,000 servers (GPU)", pred.get("gpu", "no GPU in this session"), "≤ 2 s", "", ""))
    return out


def _read_rows(rd: dict) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    for n, r in sorted(rd.items(), key=lambda kv: int(kv[0])):
        target = 50 if int(n) <= 20 else 300
        pc = r["predictions_current"]
        out.append((f"GET /predictions/current {n} servers: p50 / p99 ms",
                    f"{_mm(pc['p50_ms'], '', 1)} / {_mm(pc['p99_ms'], '', 1)}", f"p99 ≤ {target}", "",
                    _ok(pc["p99_ms"]["median"], target, False)))
        fp = r.get("fleet_page", {})
        if "p99_ms" in fp:
            out.append((f"dashboard fleet page {n} servers: p50 / p99 ms",
                        f"{_mm(fp['p50_ms'], '', 1)} / {_mm(fp['p99_ms'], '', 1)}", "", "", ""))
        elif fp:
            out.append((f"dashboard fleet page {n} servers", fp.get("skipped", "—"), "", "", ""))
    return out


def _memory_rows(mem: dict) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    if mem.get("web"):
        web = mem["web"]
        out.append(("web worker peak RSS (VmHWM) MB, after all loads", _fmt(web["max_vmhwm_mb"], "", 1), "≤ 150",
                    "2–4 GB", _ok(web["max_vmhwm_mb"], 150, False)))
        if web.get("after_ingest_vmhwm_mb"):
            out.append(("  idle RSS / peak after ingest only MB", f"{max(web['idle_vmrss_mb']):.1f} / "
                        f"{max(web['after_ingest_vmhwm_mb']):.1f}", "", "", ""))
    for n, r in sorted(mem.get("worker", {}).items(), key=lambda kv: int(kv[0])):
        out.append((f"prediction worker peak RSS at {n} servers MB", _fmt(r["vmhwm_mb"], "", 0),
                    "≤ 1,500" if int(n) >= 1000 else "", "2–4 GB" if int(n) == 20 else "",
                    _ok(r["vmhwm_mb"], 1500, False) if int(n) >= 1000 else ""))
    return out


def _soak_rows(soak: dict) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    out += [
        (f"soak {soak['minutes']} min at 100 req/s: errors", str(soak["errors"]), "0", "", _ok(soak["errors"], 0, False)),
        ("  p99 ms first / last minute", f"{soak['p99_first_ms']} / {soak['p99_last_ms']}", "flat", "", ""),
        ("  web worker RSS MB start / end", f"{soak['web_rss_start_mb']} / {soak['web_rss_end_mb']}", "flat", "", ""),
        ("  prediction worker RSS MB start / end", f"{soak['worker_rss_start_mb']} / {soak['worker_rss_end_mb']}",
         "flat", "", ""),
        ("  prediction runs complete / failed", f"{soak['runs_complete']} / {soak['runs_failed']}", "", "", ""),
    ]
    return out


def table(res: dict) -> str:
    header = ("item", "measured: median (min–max)", "target", "contract", "ok")
    body = rows(res)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(5)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body]
    return "\n".join(lines)


def main() -> None:
    """``python -m bench.report bench/results/<name>.json`` prints that run's table again."""
    import json
    import sys
    from pathlib import Path

    res = json.loads(Path(sys.argv[1]).read_text())
    print(table(res))
    m = res.get("machine", {})
    print(f"\n{m.get('nproc')} cores, {m.get('cpu')}; load average at start {m.get('loadavg_at_start')}; "
          f"wall {res.get('wall_s')} s; {res.get('started_at')}; command: {res.get('command')}")


if __name__ == "__main__":
    main()
