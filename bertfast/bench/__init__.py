"""Benchmark bertfast against PyTorch and Optimum on the same texts, threads and machine.

`bertfast bench TARGET` times every backend end to end (tokenization included) and model-only,
at several batch sizes and at batch 1, interleaving the backends so machine noise hits all
alike, and writes results.json, results.md and plot.png. Method: benchmarks/README.md.

Python API: `run_benchmark(BenchConfig(target=...)) -> Report`. Heavy libraries (torch,
transformers, optimum) are imported only when a benchmark runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .config import DEVICES, STANDARD_BACKENDS, BenchConfig

if TYPE_CHECKING:
    from .report import Report

__all__ = ["BenchConfig", "run_benchmark", "add_arguments", "main"]


def run_benchmark(cfg: BenchConfig) -> Report:
    """Run the benchmark described by `cfg`; see `bertfast.bench.harness.run_benchmark`."""
    from .harness import run_benchmark as _run

    return _run(cfg)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bertfast bench` flags (documented in --help)."""
    parser.add_argument("target", metavar="TARGET", help="export folder (with bertfast.json) or trained model folder")
    parser.add_argument("--data", default=None,
                        help="texts to replay: a CSV/TSV/JSONL/Parquet/TXT file or a built-in dataset "
                             "(bbc-news, bbc-news-headlines); default: the export's eval.jsonl, else bbc-news")
    parser.add_argument("--text-column", default="text", help="text column of --data")
    parser.add_argument("--label-column", default="label",
                        help="label column of --data (for the task's quality metric: accuracy, micro-F1, Pearson)")
    parser.add_argument("--text-pair-column", metavar="COL", default=None,
                        help="text-pair exports: the column of --data holding the second text of each pair "
                             "(not needed for the export's own eval.jsonl, whose column is text_pair)")
    parser.add_argument("--label-separator", metavar="SEP", default=None,
                        help="multi-label --data in CSV/TSV: the string joining a row's labels (e.g. '|')")
    parser.add_argument("--model-dir", default=None,
                        help="PyTorch model folder for the torch/optimum backends (default: from the export manifest)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per text (default: the export's max length, else 128)")
    parser.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes for throughput")
    parser.add_argument("--backends", default="all",
                        help=f"comma list: all, {', '.join(STANDARD_BACKENDS)}, bertfast (every variant), "
                             "bertfast:default (the export's default), bertfast:<variant>")
    parser.add_argument("--threads", type=int, default=None, help="threads for every backend (default: usable CPUs)")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="execution provider for every backend (torch uses CUDA for any GPU provider); "
                             "auto: a GPU when both ONNX Runtime and torch can use one, else cpu")
    parser.add_argument("--out", default=None,
                        help="results folder (default: benchmarks/results/<TARGET name>-L<max length>)")
    parser.add_argument("--force", action="store_true", help="replace an existing results folder")
    parser.add_argument("--quick", action="store_true", help="short smoke-run durations (indicative numbers only)")
    parser.add_argument("--min-runs", type=int, default=None, help="timed repeats per measurement (default 3; quick 2)")
    parser.add_argument("--min-seconds", type=float, default=None,
                        help="timed seconds per measurement (default 3; quick 0.5)")
    parser.add_argument("--max-texts", type=int, default=None, help="texts in the throughput sample (default 256)")
    parser.add_argument("--latency-texts", type=int, default=None, help="texts timed one by one at batch 1 (default 200)")
    parser.add_argument("--peak-seconds", type=float, default=None,
                        help="seconds per peak matmul kernel (0 skips the roofline peaks)")
    parser.add_argument("--cache-dir", default=None, help="cache for Optimum exports (default ~/.cache/bertfast/bench)")
    parser.add_argument("--optimum-per-channel", action="store_true", help="per-channel scales for Optimum int8")
    parser.add_argument("--seed", type=int, default=0, help="seed of the text samples")
    parser.add_argument("--no-plot", action="store_true", help="skip plot.png")
    parser.add_argument("--name", default=None, help="workload name in the reports (default: the --out folder name)")
    parser.add_argument("--note", default="", help="free text recorded in the report")


def default_out(target: str, max_length: int | None) -> str:
    """benchmarks/results/<TARGET folder name>[-L<max length>], relative to the working directory."""
    from pathlib import Path

    suffix = f"-L{max_length}" if max_length else ""
    return str(Path("benchmarks") / "results" / f"{Path(target).resolve().name}{suffix}")


def main(args: argparse.Namespace) -> int:
    """`bertfast bench`: build the config from the flags, run, print the Markdown report."""
    cfg = BenchConfig(
        target=args.target, model_dir=args.model_dir, data=args.data, text_column=args.text_column,
        label_column=args.label_column, text_pair_column=args.text_pair_column,
        label_separator=args.label_separator, max_length=args.max_length, batch_sizes=args.batch_sizes,
        backends=args.backends, threads=args.threads, device=args.device,
        out=args.out or default_out(args.target, args.max_length), force=args.force,
        preset="quick" if args.quick else "default", min_runs=args.min_runs, min_seconds=args.min_seconds,
        max_texts=args.max_texts, latency_texts=args.latency_texts, peak_seconds=args.peak_seconds,
        cache_dir=args.cache_dir, optimum_per_channel=args.optimum_per_channel, seed=args.seed,
        plot=not args.no_plot, name=args.name, note=args.note,
    )
    report = run_benchmark(cfg)
    print(report.to_markdown())
    for kind, path in report.paths.items():
        print(f"{kind}: {path}")
    failed = [b["name"] for b in report.data["backends"] if b["status"] == "failed"]
    return 1 if failed and len(failed) == len(report.data["backends"]) else 0
