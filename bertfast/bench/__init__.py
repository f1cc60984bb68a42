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

from .config import BenchConfig, add_arguments, from_args

if TYPE_CHECKING:
    from .report import Report

__all__ = ["BenchConfig", "run_benchmark", "add_arguments", "main"]


def run_benchmark(cfg: BenchConfig) -> Report:
    """Run the benchmark described by `cfg`; see `bertfast.bench.harness.run_benchmark`."""
    from .harness import run_benchmark as _run

    return _run(cfg)


def default_out(target: str, max_length: int | None) -> str:
    """benchmarks/results/<TARGET folder name>[-L<max length>], relative to the working directory."""
    from pathlib import Path

    suffix = f"-L{max_length}" if max_length else ""
    return str(Path("benchmarks") / "results" / f"{Path(target).resolve().name}{suffix}")


def main(args: argparse.Namespace) -> int:
    """`bertfast bench`: build the config from the flags, run, print the Markdown report."""
    cfg = from_args(args, out=args.out or default_out(args.target, args.max_length))
    report = run_benchmark(cfg)
    print(report.to_markdown())
    for kind, path in report.paths.items():
        print(f"{kind}: {path}")
    failed = [b["name"] for b in report.data["backends"] if b["status"] == "failed"]
    return 1 if failed and len(failed) == len(report.data["backends"]) else 0
