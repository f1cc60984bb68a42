"""What the export decides and shows from the validation figures: the default per provider, the table."""

from __future__ import annotations

from ..runtime.providers import PROVIDERS
from ..tasks import RANKING_PRIMARY


def _drop(val: dict) -> float:
    """Points of the primary metric lost (exports before tasks wrote only accuracy_drop_points)."""
    return val.get("metric_drop_points", val.get("accuracy_drop_points", 0.0))


def choose_defaults(variants: dict) -> dict:
    """Fastest eligible variant per provider (near-ties go to a batch-invariant one, then the most
    faithful one).

    Returns one key per row of `PROVIDERS`. fp32 is the fallback when nothing else qualifies
    on a provider it targets; None where no variant targets the provider. Variants that failed
    to build are never chosen.
    """
    out = {}
    for device in PROVIDERS:
        cands = [(n, v) for n, v in variants.items() if device in v["devices"] and v.get("status") != "failed"]
        ok = [(n, v) for n, v in cands if v.get("eligible") and v.get("speed") and v["speed"]["device"] == device]
        if ok:
            # Variants within 3% of the fastest are a tie on a short measurement: among them
            # take the one that agrees most with PyTorch (then the fastest).
            top = max(v["speed"]["seq_per_s"] for _, v in ok)
            tied = [(n, v) for n, v in ok if v["speed"]["seq_per_s"] >= 0.97 * top]
            # A batch-invariant variant (same decision alone as in any batch) wins a tie first.
            out[device] = max(tied, key=lambda nv: (-nv[1]["validation"].get("batch_flips", 0.0),
                                                    nv[1]["validation"]["label_agreement"],
                                                    -_drop(nv[1]["validation"]),
                                                    nv[1]["speed"]["seq_per_s"]))[0]
        elif "fp32" in dict(cands):
            out[device] = "fp32"
        else:
            out[device] = None
    return out


# -- the table: columns per task ------------------------------------------------------------
# (header, width, value key, format): "pct" shows a share as a percentage, "num" a value as is.
_METRIC_COLUMNS = {
    "single_label": [("accuracy", 9, "accuracy", "pct")],
    "multi_label": [("micro-F1", 9, "micro_f1", "pct"), ("exact", 8, "exact_match", "pct")],
    "regression": [("pearson", 8, "pearson", "num"), ("spearman", 8, "spearman", "num"), ("mae", 7, "mae", "num")],
    "ranking": [("ndcg@10", 8, "ndcg@10", "num"), ("mrr", 7, "mrr", "num"), ("top1", 8, "top1_agreement", "pct")],
}
_REFERENCE = {  # what the reference line names, per task
    "single_label": [("accuracy", "accuracy", "pct"), ("macro-F1", "macro_f1", "pct")],
    "multi_label": [("micro-F1", "micro_f1", "pct"), ("macro-F1", "macro_f1", "pct"),
                    ("exact-match", "exact_match", "pct")],
    "regression": [("pearson", "pearson", "num"), ("spearman", "spearman", "num"), ("MAE", "mae", "num")],
    "ranking": [("NDCG@10", "ndcg@10", "num"), ("MRR", "mrr", "num")],
}


def format_table(m: dict) -> str:
    """The validation table printed after export, from a manifest dict (`Manifest.raw`).

    Columns per task: single_label accuracy; multi_label micro-F1 and exact-match; regression
    Pearson, Spearman and MAE; reranking NDCG@10, MRR and top-1 agreement. Then the drop (points
    of the primary metric), label agreement, max |score difference|, seq/s, size and verdict.
    Exports written before tasks existed show the single-label table they always showed.
    """
    task = m.get("task") or {}
    name = task.get("name", "single_label")
    ranking = task.get("primary_metric") == RANKING_PRIMARY
    kind = "ranking" if ranking else name
    ref = m.get("reference") or {}
    unit = "pairs" if task.get("pair") else "texts"
    rows = [f"export {m['source']['architecture']} -> {len(m['variants'])} variant(s); validated on "
            f"{m['eval_data']['rows']} held-out {unit} ({m['eval_data']['source']})"]
    if task:
        rows.append(_gate_line(m, task, name, ranking))
    shown = [f"{label} {_fmt(ref.get(key), how)}" for label, key, how in _REFERENCE[kind]]
    if ranking:
        shown.append(f"{ref.get('queries', '?')} queries")
        shown += [f"{label} {_fmt(ref.get(key), how)}" for label, key, how in _REFERENCE[name] if key in ref]
    rows.append(f"reference PyTorch fp32: {', '.join(shown)}, {ref.get('seq_per_s', '?')} seq/s")
    diff = "max|ds|" if name == "regression" else "max|dp|"  # raw scores vs probabilities
    cols = [*_METRIC_COLUMNS[kind], ("drop", 6, None, "drop"), ("agree", 8, "label_agreement", "pct"),
            (diff, 8, "max_abs_prob_diff", "diff"), ("seq/s", 8, None, "speed"), ("MB", 6, None, "size")]
    if any("batch_flips" in (v.get("validation") or {}) for v in m["variants"].values()):
        # Decisions that change when an input runs alone instead of in a batch (see
        # validate.batch_invariance); exports made before it was measured show no column.
        cols.insert(-2, ("b1-flip", 8, "batch_flips", "pct"))
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
    rows += _window_rows(m, kind)
    return "\n".join(rows)


def _window_rows(m: dict, kind: str) -> list[str]:
    """The window search's grid (exporter/window.py): each accepted variant at each window tried."""
    searched = {n: v["windows"] for n, v in m["variants"].items() if v.get("windows")}
    if not searched:
        return []
    chosen = (m.get("window") or {}).get("cpu") or {}
    rows = [f"window search on the CPU (vs PyTorch fp32 at {m['max_length']} tokens, same gate; "
            "each mode stops at its first rejected window):"]
    cols = [*_METRIC_COLUMNS[kind], ("drop", 6, None, "drop"), ("agree", 8, "label_agreement", "pct"),
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


def _gate_line(m: dict, task: dict, name: str, ranking: bool) -> str:
    pair = "text pairs" if task.get("pair") else "single texts"
    primary = task.get("primary_metric", "accuracy")
    budget = m.get("max_accuracy_drop")
    agree = "top-1 agreement per query" if ranking else "agreement"
    line = f"task {name}, {pair}{', reranking' if ranking else ''}: primary metric {primary}"
    line += f"; gate: drop <= {budget} points" if budget is not None else ""
    if task.get("min_agreement") is not None:
        line += f", {agree} with PyTorch >= {task['min_agreement']:g}%"
    return line


def _cell(val: dict, sp: dict, v: dict, key: str | None, how: str, width: int) -> str:
    nan = float("nan")
    if how == "drop":  # + 0.0: a drop of -0.0001 shows as 0.00, not -0.00
        return f"{(round(_drop(val), 2) + 0.0 if val else nan):>{width}.2f}"
    if how == "speed":
        return f"{sp.get('seq_per_s', nan):>{width}.1f}"
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
