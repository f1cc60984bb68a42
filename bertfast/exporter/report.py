"""What the export decides and shows from the validation figures: the default per provider, the table."""

from __future__ import annotations

from ..runtime.providers import PROVIDERS
from ..tasks import TASKS, ranking
from . import speed


def _drop(val: dict) -> float:
    """Points of the primary metric lost (exports before tasks wrote only accuracy_drop_points)."""
    return val.get("metric_drop_points", val.get("accuracy_drop_points", 0.0))


def faithfulness(val: dict) -> tuple:
    """How closely a variant follows PyTorch, larger is better: batch-invariant first (same
    decision alone as in any batch), then the agreement's 95% bound, then the smaller drop."""
    return (-val.get("batch_flips", 0.0), val.get("agreement_bound", val.get("label_agreement", 0.0)),
            val.get("label_agreement", 0.0), -_drop(val))


def choose_defaults(variants: dict) -> dict:
    """Per provider, the fastest eligible variant beyond the timing noise; ties go to the most
    faithful one (`faithfulness`), then to the build order (`speed.pick`).

    Returns one key per row of `PROVIDERS`. fp32 is the fallback when nothing else qualifies
    on a provider it targets; None where no variant targets the provider. Variants that failed
    to build are never chosen.
    """
    out = {}
    for device in PROVIDERS:
        cands = [(n, v) for n, v in variants.items() if device in v["devices"] and v.get("status") != "failed"]
        ok = [(n, v["speed"]) for n, v in cands if v.get("eligible") and v.get("speed") and v["speed"]["device"] == device]
        if ok:
            out[device] = speed.pick(ok, lambda n: faithfulness(variants[n]["validation"]))
        elif "fp32" in dict(cands):
            out[device] = "fp32"
        else:
            out[device] = None
    return out


# -- the table: columns per task (`Task.table_columns`, `Task.reference_columns`) -------------
# (header, width, value key, format): "pct" shows a share as a percentage, "num" a value as is.
def format_table(m: dict) -> str:
    """The validation table printed after export, from a manifest dict (`Manifest.raw`).

    Columns per task: single_label accuracy; multi_label micro-F1 and exact-match; regression
    Pearson, Spearman and MAE; reranking NDCG@10, MRR and top-1 agreement. Then the drop (points
    of the primary metric), label agreement, max |score difference|, seq/s, size and verdict.
    Exports written before tasks existed show the single-label table they always showed.
    """
    task = m.get("task") or {}
    t = TASKS[task.get("name", "single_label")]
    name = t.name
    is_ranking = task.get("primary_metric") == ranking.PRIMARY
    metric_cols = list(ranking.TABLE_COLUMNS if is_ranking else t.table_columns)
    ref = m.get("reference") or {}
    unit = "pairs" if task.get("pair") else "texts"
    ed = m["eval_data"]
    labeled = "labeled " if ed.get("agreement_rows") else ""
    rows = [f"export {m['source']['architecture']} -> {len(m['variants'])} variant(s); validated on "
            f"{ed['rows']} {labeled}held-out {unit} ({ed['source'] if ed['rows'] else 'none'})"
            + (f" + {ed['agreement_rows']} unlabeled ({ed['agreement']})" if ed.get("agreement_rows") else "")]
    if ed.get("calibration"):
        rows.append(f"int8-static calibrated on: {ed['calibration']}")
    if not ed.get("rows", 1):
        rows.append("no labels: the gate bounds agreement and score error with PyTorch only (no metric)")
    if task:
        rows.append(_gate_line(m, task, name, is_ranking))
    shown = [f"{label} {_fmt(ref.get(key), how)}"
             for label, key, how in (ranking.REFERENCE_COLUMNS if is_ranking else t.reference_columns)]
    if is_ranking:
        shown.append(f"{ref.get('queries', '?')} queries")
        shown += [f"{label} {_fmt(ref.get(key), how)}" for label, key, how in t.reference_columns if key in ref]
    rows.append(f"reference PyTorch fp32: {', '.join(shown)}, {ref.get('seq_per_s', '?')} seq/s")
    cols = [*metric_cols, ("drop", 6, None, "drop"), ("agree", 8, "label_agreement", "pct"),
            (t.diff_name, 8, "max_abs_prob_diff", "diff"), ("seq/s", 8, None, "speed"), ("MB", 6, None, "size")]
    if any("agreement_bound" in (v.get("validation") or {}) for v in m["variants"].values()):
        # drop95 / agree95: the 95% interval's ends the gate compares (exporter/evidence.py); ±%:
        # the timing rounds' spread (exporter/speed.py). Exports made before show no columns.
        cols[len(metric_cols) + 1:len(metric_cols) + 2] = [("drop95", 7, "drop_ci", "drop_hi"),
                                                           ("agree", 8, "label_agreement", "pct"),
                                                           ("agree95", 8, "agreement_bound", "pct")]
        cols.insert(-1, ("±%", 5, None, "spread"))
    if any("batch_flips" in (v.get("validation") or {}) for v in m["variants"].values()):
        # Decisions that change when an input runs alone instead of in a batch (see
        # validate.batch_invariance); exports made before it was measured show no column.
        cols.insert(cols.index(next(c for c in cols if c[0] == "seq/s")), ("b1-flip", 8, "batch_flips", "pct"))
    rows.append(f"{'variant':<19} " + " ".join(f"{h:>{w}}" for h, w, _, _ in cols) + "  verdict")
    for n, v in m["variants"].items():
        if v.get("status") == "failed":
            rows.append(f"{n:<19} " + " ".join(f"{'-':>{w}}" for _, w, _, _ in cols) + f"  failed: {v.get('reason', '?')}")
            continue
        val, sp = v.get("validation") or {}, v.get("speed") or {}
        chosen = [d for d, x in m["default"].items() if x == n]
        mark = " <- default " + "/".join(chosen) if chosen else ""
        win = ((m.get("window") or {}).get("cpu") or {})
        if "cpu" in chosen and win.get("variant") == n and win.get("max_length") != m["max_length"]:
            mark += f" (window {win['max_length']} {win['long_text']}, below)"
        cells = [_cell(val, sp, v, key, how, w) for _, w, key, how in cols]
        rows.append(f"{n:<19} " + " ".join(cells) + f"  {v.get('reason', '')}{mark}")
    rows += _window_rows(m, metric_cols)
    return "\n".join(rows)


def _window_rows(m: dict, metric_cols: list) -> list[str]:
    """The window search's grid (exporter/window.py): each accepted variant at each window tried."""
    searched = {n: v["windows"] for n, v in m["variants"].items() if v.get("windows")}
    if not searched:
        return []
    chosen = (m.get("window") or {}).get("cpu") or {}
    rows = [f"window search on the CPU (vs PyTorch fp32 at {m['max_length']} tokens, same gate; "
            "each mode stops at its first rejected window):"]
    cols = [*metric_cols, ("drop", 6, None, "drop"), ("agree", 8, "label_agreement", "pct"),
            ("seq/s", 8, None, "speed")]
    rows.append(f"{'variant':<19} {'window':<15}" + " ".join(f"{h:>{w}}" for h, w, _, _ in cols) + "  verdict")
    for n, entries in searched.items():
        for e in entries:
            win = str(e["max_length"]) + ("" if e["long_text"] == "truncate" else f" {e['long_text']}")
            cells = [f"{'-':>{w}}" if how == "speed" and not e.get("speed") else  # rejected: never timed
                     _cell(e.get("validation") or {}, e.get("speed") or {}, {}, key, how, w) for _, w, key, how in cols]
            pick = (chosen.get("variant"), chosen.get("max_length"), chosen.get("long_text"))
            mark = " <- default cpu" if pick == (n, e["max_length"], e["long_text"]) else ""
            verdict = e.get("reason", "") if e.get("eligible") else f"REJECTED: {e.get('reason', '')}"
            rows.append(f"{n:<19} {win:<15}" + " ".join(cells) + f"  {verdict}{mark}")
    return rows


def _gate_line(m: dict, task: dict, name: str, is_ranking: bool) -> str:
    pair = "text pairs" if task.get("pair") else "single texts"
    primary = task.get("primary_metric", "accuracy")
    budget = m.get("max_accuracy_drop")
    agree = "top-1 agreement per query" if is_ranking else "agreement"
    line = f"task {name}, {pair}{', reranking' if is_ranking else ''}: primary metric {primary}"
    line += f"; gate: drop <= {budget} points" if budget is not None else ""
    if task.get("min_agreement") is not None:
        line += f", {agree} with PyTorch >= {task['min_agreement']:g}%"
    return line


def _cell(val: dict, sp: dict, v: dict, key: str | None, how: str, width: int) -> str:
    nan = float("nan")
    if how == "drop":  # + 0.0: a drop of -0.0001 shows as 0.00, not -0.00
        return f"{(round(_drop(val), 2) + 0.0 if val else nan):>{width}.2f}"
    if how == "drop_hi":
        ci = val.get(key)
        return f"{(ci[1] + 0.0 if ci else nan):>{width}.2f}"
    if how == "speed":
        return f"{sp.get('seq_per_s', nan):>{width}.1f}"
    if how == "spread":
        return f"{100 * sp.get('spread', nan):>{width}.0f}"
    if how == "size":
        return f"{v.get('size_mb', nan):>{width}.1f}"
    if how == "diff":
        return f"{val.get(key, nan):>{width}.4f}"
    return f"{_fmt(val.get(key), how):>{width}}"


def _fmt(x, how: str) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.2f}%" if how == "pct" else f"{x:.4f}"


def _pct(x) -> str:
    return _fmt(x, "pct")
