"""What the export decides and shows from the validation figures: the default per provider, the table."""

from __future__ import annotations

from ..runtime.providers import PROVIDERS


def choose_defaults(variants: dict) -> dict:
    """Fastest eligible variant per provider (near-ties go to the most faithful one).

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
            out[device] = max(tied, key=lambda nv: (nv[1]["validation"]["label_agreement"],
                                                    -nv[1]["validation"]["accuracy_drop_points"],
                                                    nv[1]["speed"]["seq_per_s"]))[0]
        elif "fp32" in dict(cands):
            out[device] = "fp32"
        else:
            out[device] = None
    return out


def format_table(m: dict) -> str:
    """The validation table printed after export, from a manifest dict (`Manifest.raw`)."""
    ref = m.get("reference") or {}
    rows = [f"export {m['source']['architecture']} -> {len(m['variants'])} variant(s); validated on "
            f"{m['eval_data']['rows']} held-out texts ({m['eval_data']['source']})",
            f"reference PyTorch fp32: accuracy {_pct(ref.get('accuracy'))}, macro-F1 {_pct(ref.get('macro_f1'))}, "
            f"{ref.get('seq_per_s', '?')} seq/s",
            f"{'variant':<19} {'accuracy':>9} {'drop':>6} {'agree':>8} {'max|dp|':>8} {'seq/s':>8} {'MB':>6}  verdict"]
    nan = float("nan")
    for n, v in m["variants"].items():
        if v.get("status") == "failed":
            rows.append(f"{n:<19} {'-':>9} {'-':>6} {'-':>8} {'-':>8} {'-':>8} {'-':>6}  failed: {v.get('reason', '?')}")
            continue
        val, sp = v.get("validation") or {}, v.get("speed") or {}
        chosen = [d for d, x in m["default"].items() if x == n]
        mark = " <- default " + "/".join(chosen) if chosen else ""
        rows.append(f"{n:<19} {_pct(val.get('accuracy')):>9} {val.get('accuracy_drop_points', nan):>6.2f} "
                    f"{_pct(val.get('label_agreement')):>8} {val.get('max_abs_prob_diff', nan):>8.4f} "
                    f"{sp.get('seq_per_s', nan):>8.1f} {v['size_mb']:>6.1f}  {v.get('reason', '')}{mark}")
    return "\n".join(rows)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"
