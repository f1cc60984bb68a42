"""Benchmark reports: JSON (all numbers), Markdown tables, a PNG plot, and the README block.

Everything here renders from the JSON dict alone, so a committed `results.json` can be
re-rendered (and the README table regenerated) without re-running anything.
"""

from __future__ import annotations

import json
from pathlib import Path

BASELINES = ("torch-seed", "torch", "optimum-int8")


def _fmt(x, digits: int = 1, suffix: str = "") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}{suffix}"
    return f"{x:.{digits}f}{suffix}"


def _pct(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def _ok(d: dict) -> list[dict]:
    return [b for b in d["backends"] if b["status"] == "ok"]


def _seq(b: dict, bs: int, key: str = "throughput") -> float | None:
    return (b.get(key, {}).get(str(bs)) or {}).get("seq_per_s")


def headline_batch(d: dict) -> int:
    """The batch size the ratios and the README use: the largest one measured."""
    return max(int(x) for x in d["config"]["batch_sizes"])


def default_bertfast(d: dict) -> dict | None:
    """The bertfast backend a user gets by default (the export's default variant), else the fastest."""
    ok = [b for b in _ok(d) if b["name"].startswith("bertfast:")]
    want = d["workload"].get("default_variant")
    for b in ok:
        if want and b["name"] == f"bertfast:{want}":
            return b
    bs = headline_batch(d)
    return max(ok, key=lambda b: _seq(b, bs) or 0, default=None)


def _task(task: str | None):
    """The report's task (reports written before tasks existed are single-label)."""
    from .. import tasks

    return tasks.TASKS.get(task) or tasks.get(None)


def render_markdown(d: dict) -> str:
    """The Markdown report: throughput table with ratios, latency/quality table, peaks, warnings."""
    lines = _header(d) + _throughput_table(d) + _latency_table(d) + _footer(d)
    return "\n".join(lines) + "\n"


def _header(d: dict) -> list[str]:
    """What ran where: model, data and its token counts, machine, task, work per text."""
    w, env = d["workload"], d["environment"]
    model = w.get("model") or {}
    lines = [
        f"## Benchmark: {d['name']}",
        "",
        f"- model: `{w.get('model_dir') or w.get('export_dir')}` ({model.get('layers', '?')} layers, hidden "
        f"{model.get('hidden', '?')}); export: `{w.get('export_dir')}`",
        f"- data: `{w['data']}`: {w['n_texts']} {'pairs' if w.get('pair') else 'texts'} replayed in their order (mean {w['tokens']['mean']:.0f}, "
        f"median {w['tokens']['median']:.0f}, max {w['tokens']['max']} tokens; "
        f"{100 * w['tokens']['truncated_share']:.0f}% truncated at max length {w['max_length']})",
        f"- machine: {env['cpu']} ({', '.join(env['cpu_flags'])}), {env['usable_cpus']} usable CPUs, "
        f"device {w['device']}, threads: {d['config']['threads']} for every backend; {d['created']}",
    ]
    if "task" in w:
        lines.append(f"- task: {w['task'] or _task(None).name}{' on text pairs' if w.get('pair') else ''} (scores: "
                     f"{w.get('activation') or 'softmax'}; quality metric: {_metric(w)})")
    if w.get("flops_per_text_mean"):
        lines.append(
            f"- work: {w['flops_per_text_mean'] / 1e9:.2f} GFLOP per text on average "
            f"({w['flops_per_text_at_max_length'] / 1e9:.2f} at {w['max_length']} tokens)"
        )
    if w.get("note"):
        lines.append(f"- note: {w['note']}")
    return lines


def _metric(w: dict) -> str:
    """The quality column's metric (results written before tasks: accuracy)."""
    return w.get("metric") or "accuracy"


def _throughput_table(d: dict) -> list[str]:
    """Texts/s per batch size, tokens/s, model-only, share of peak, padding and the ratios at
    the headline batch size."""
    w, bs_list, H = d["workload"], [int(x) for x in d["config"]["batch_sizes"]], headline_batch(d)
    by_name = {b["name"]: b for b in _ok(d)}
    lines = [
        "",
        "Throughput in texts/s, end to end (tokenization included), median of the repeats; ratios at batch "
        f"{H}. Model-only: tokenized up front.",
        "",
    ]
    head = ["backend", "precision", *[f"batch {b}" for b in bs_list], f"tokens/s @{H}", f"model-only @{H}",
            f"% of peak @{H}", f"padding @{H}", *[f"× {x}" for x in BASELINES]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in _ok(d):
        t = b["throughput"].get(str(H), {})
        win = b.get("window") or {}
        shorter = win.get("max_length") and win["max_length"] < w["max_length"]
        # A bertfast default that runs the shorter window its export chose says so.
        name = f"`{b['name']}` (window {win['max_length']} {win['long_text']})" if shorter else f"`{b['name']}`"
        row = [name, b.get("precision", "")]
        row += [_fmt(_seq(b, x)) for x in bs_list]
        row += [_fmt(t.get("tokens_per_s"), 0), _fmt(_seq(b, H, "model_only")),
                _pct(t.get("fraction_of_peak")),
                _fmt(100 * t["padding_ratio"], 0, "%") if t.get("padding_ratio") is not None else "–"]
        for base in BASELINES:
            ref = _seq(by_name[base], H) if base in by_name else None
            mine = _seq(b, H)
            row.append(f"{mine / ref:.2f}×" if ref and mine else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _latency_table(d: dict) -> list[str]:
    """Batch-1 latency, agreement with `torch` and the task's metric, load time and memory."""
    w = d["workload"]
    task, metric = _task(w.get("task")), _metric(w)
    # Correlations are shown as such (0.912), accuracy and F1 as percentages: as the task's own
    # columns show them (a metric no task names, as a percentage).
    as_number = any(key == metric and fmt == "num" for _, key, fmt in task.reference_columns)
    lines = [
        "",
        f"Batch-1 latency (one {'pair' if w.get('pair') else 'text'} per call, tokenization included) and agreement "
        f"with `torch` on the same {'inputs (label agreement: ' + task.agreement_rule + ')' if 'task' in w else 'texts'}.",
        "",
        f"| backend | p50 ms | p90 ms | p99 ms | label agreement | {metric} | max {'prob' if task.has_classes else 'score'} "
        "diff | load s | load RSS MiB | run peak +MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in _ok(d):
        lat, q, m = b.get("latency_ms") or {}, b.get("quality") or {}, b.get("memory") or {}
        agree = q.get("label_agreement")
        value = q.get(metric)
        shown = "–" if value is None else _fmt(value, 3) if as_number else _fmt(100 * value, 2, "%")
        lines.append(
            f"| `{b['name']}` | {_fmt(lat.get('p50'), 2)} | {_fmt(lat.get('p90'), 2)} | {_fmt(lat.get('p99'), 2)} | "
            f"{_fmt(100 * agree, 2, '%') if agree is not None else '–'} | {shown} | "
            f"{_fmt(q.get('max_abs_prob_diff'), 4)} | {_fmt(b.get('load_s'), 1)} | {_fmt(m.get('load_rss_mb'), 0)} | "
            f"{_fmt(m.get('run_peak_extra_mb'), 0)} |"
        )
    return lines


def _footer(d: dict) -> list[str]:
    """The measured peaks, the backends not measured and why, the warnings."""
    lines: list[str] = []
    peaks = (d.get("roofline") or {}).get("peaks") or {}
    if peaks:
        lines += ["", "Peak matrix-multiply rates measured in this run (the roofline's ceiling): " + "; ".join(
            f"{p} {v['gflops']:.0f} G{'OP' if p == 'int8' else 'FLOP'}/s ({v['kernel']}, {'x'.join(map(str, v['shape']))})"
            for p, v in peaks.items()
        ) + ". Int8 backends are compared with the int8 peak, fp32 with fp32."]
    other = [b for b in d["backends"] if b["status"] != "ok"]
    if other:
        lines += ["", "Not measured:", ""]
        lines += [f"- `{b['name']}`: {b['status']}: {b['error']}" for b in other]
    if d.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {x}" for x in d["warnings"]]
    return lines


def render_plot(d: dict, path: str | Path) -> Path:
    """Throughput vs batch size per backend, and the batch-1 latency distribution (ECDF)."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in CI and over ssh
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    bs_list = [int(x) for x in d["config"]["batch_sizes"]]
    for b in _ok(d):
        ys = [_seq(b, x) for x in bs_list]
        pts = [(x, y) for x, y in zip(bs_list, ys) if y]
        if pts:
            ax1.plot(*zip(*pts), marker="o", label=b["name"])
        samples = sorted(b.get("latency_samples_ms") or [])
        if samples:
            n = len(samples)
            ax2.step(samples, [(i + 1) / n for i in range(n)], where="post", label=b["name"])
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(bs_list, [str(x) for x in bs_list])
    ax1.set_xlabel("batch size")
    ax1.set_ylabel("texts/s, end to end")
    ax1.set_title(f"Throughput ({d['name']}, max {d['workload']['max_length']} tokens)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlabel("batch-1 latency, ms (log)")
    ax2.set_ylabel("share of calls ≤ x")
    ax2.set_title("Batch-1 latency distribution")
    ax2.grid(alpha=0.3)
    if ax2.lines:
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class Report:
    """A benchmark's results. `data` is the JSON dict; `paths` the files written."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.paths: dict[str, Path] = {}

    @classmethod
    def from_json(cls, path: str | Path) -> Report:
        """Read a `results.json` back."""
        return cls(json.loads(Path(path).read_text()))

    def to_json(self) -> dict:
        return self.data

    def to_markdown(self) -> str:
        return render_markdown(self.data)

    def backend(self, name: str) -> dict:
        """The result entry of backend `name`."""
        return next(b for b in self.data["backends"] if b["name"] == name)

    def write(self, out: str | Path, plot: bool = True) -> dict[str, Path]:
        """Write results.json, results.md and plot.png into `out`, atomically (all or nothing)."""
        from ..utils import atomic_dir, write_json

        out = Path(out)
        with atomic_dir(out) as tmp:
            write_json(tmp / "results.json", self.data)
            (tmp / "results.md").write_text(self.to_markdown())
            if plot:
                try:
                    render_plot(self.data, tmp / "plot.png")
                except ImportError:
                    self.data.setdefault("warnings", []).append("matplotlib is not installed: no plot.png")
        self.paths = {"json": out / "results.json", "markdown": out / "results.md"}
        if (out / "plot.png").exists():
            self.paths["plot"] = out / "plot.png"
        return self.paths


# ---------------------------------------------------------------------------------------
# README block: one row per workload, generated from committed results files.

README_BACKENDS = ("torch-seed", "torch", "torch-int8", "optimum", "optimum-int8")


def readme_table(results: list[tuple[str, dict]]) -> str:
    """The README speed table from `(relative path, results dict)` pairs, one row per workload."""
    if not results:
        raise ValueError("no results files given")
    head = ["workload", "tokens (mean)", *[f"`{b}`" for b in README_BACKENDS], "bertfast (default variant)",
            "× torch-seed", "× optimum-int8", "batch-1 p50 ms: bertfast / optimum-int8"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    machines, sources = set(), []
    for rel, d in results:
        H = headline_batch(d)
        by = {b["name"]: b for b in _ok(d)}
        bf = default_bertfast(d)
        w = d["workload"]
        row = [f"{d['name']} (max {w['max_length']})", f"{w['tokens']['mean']:.0f}"]
        row += [_fmt(_seq(by[n], H)) if n in by else "–" for n in README_BACKENDS]
        mine = _seq(bf, H) if bf else None
        row.append(f"**{_fmt(mine)}** (`{bf['name'].split(':', 1)[1]}`)" if bf else "–")
        for base in ("torch-seed", "optimum-int8"):
            ref = _seq(by[base], H) if base in by else None
            row.append(f"{mine / ref:.2f}×" if mine and ref else "–")
        p50 = lambda b: (b.get("latency_ms") or {}).get("p50") if b else None  # noqa: E731
        row.append(f"{_fmt(p50(bf), 1)} / {_fmt(p50(by.get('optimum-int8')), 1)}")
        lines.append("| " + " | ".join(row) + " |")
        env = d["environment"]
        machines.add(f"{env['cpu']}, {d['config']['threads']} threads, batch {H}")
        sources.append(f"[{d['name']}]({rel})")
    lines += [
        "",
        f"Texts/s end to end (tokenization included), median of interleaved repeats; {'; '.join(sorted(machines))}. "
        f"Generated by `benchmarks/update_readme.py` from {', '.join(sources)}; method in "
        "[benchmarks/README.md](benchmarks/README.md).",
    ]
    return "\n".join(lines)


START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def replace_block(text: str, block: str) -> str:
    """Replace what lies between the bench markers in `text` (markers kept)."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"the README needs a {START} ... {END} block for the speed table")
    return text[: i + len(START)] + "\n" + block.strip() + "\n" + text[j:]
