"""`BenchConfig`: what to benchmark, on which data, for how long.

The backend names come from the registry in `bench.backends` and the devices from the
execution-provider table (`runtime.providers`); this module only reads them.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .. import flags
from ..checks import check_float, check_int
from ..errors import BertfastError
from ..flags import meta
from ..runtime.providers import DEVICES
from .backends import FACTORIES, STANDARD_BACKENDS
from .paths import display_path

__all__ = ["BenchConfig", "DEVICES", "PRESETS", "STANDARD_BACKENDS", "add_arguments", "from_args", "known_backends",
           "parse_int_list"]

# Presets over knobs: `--quick` is for smoke runs (numbers are indicative only).
PRESETS: dict[str, dict] = {
    "default": {"min_runs": 3, "min_seconds": 3.0, "max_texts": 256, "latency_texts": 200, "peak_seconds": 1.0},
    "quick": {"min_runs": 2, "min_seconds": 0.5, "max_texts": 64, "latency_texts": 20, "peak_seconds": 0.2},
}


def known_backends() -> tuple[str, ...]:
    """Backend names `--backends` accepts: the registry's (tests may add doubles) and "bertfast"."""
    return (*FACTORIES, "bertfast")


def parse_int_list(value: str | int | list | tuple, flag: str) -> tuple[int, ...]:
    """Parse "1,8,32" (or a sequence) into positive ints; errors name `flag`."""
    items = value.split(",") if isinstance(value, str) else ([value] if isinstance(value, int) else list(value))
    out = []
    for item in items:
        try:
            n = int(str(item).strip())
        except ValueError:
            raise BertfastError(f"{flag} must be positive integers separated by commas, e.g. 1,8,32; got {value!r}.") from None
        if n < 1:
            raise BertfastError(f"{flag} must be positive integers separated by commas, e.g. 1,8,32; got {value!r}.")
        out.append(n)
    if not out:
        raise BertfastError(f"{flag} needs at least one value, e.g. 1,8,32.")
    return tuple(dict.fromkeys(out))  # drop duplicates, keep order


@dataclass
class BenchConfig:
    """Settings of one `bertfast bench` run; each field is the CLI flag of the same name, except
    `preset` (the flag `--quick`), `busy_cv` and `extra` (Python only).

    Attributes:
        target: export folder (with bertfast.json) or trained model folder.
        model_dir: PyTorch model folder for the torch/optimum backends (default: the export
            manifest's source.model_dir, or TARGET itself when it is a model folder).
        data: texts to replay: a CSV/TSV/JSONL/Parquet/TXT file or a built-in dataset (bbc-news,
            bbc-news-headlines); default: the export's eval.jsonl (its held-out split), else bbc-news.
        text_column: text column of --data.
        label_column: label column of --data, for the task's quality metric (accuracy, micro-F1,
            Pearson); the data may lack it.
        text_pair_column: text-pair exports: the column of --data holding the second text of each
            pair (not needed for the export's own eval.jsonl, whose column is text_pair); refused
            for a single-text export.
        label_separator: multi-label --data in CSV/TSV: the string joining a row's labels (e.g.
            '|'); JSONL/Parquet rows hold lists and need none.
        max_length: tokens per text (default: the export's max length, else 128).
        batch_sizes: comma-separated batch sizes for the throughput measurements.
        backends: comma list: all, torch-seed, torch, torch-int8, optimum, optimum-int8, bertfast
            (every variant), bertfast:default (the export's default), bertfast:<variant>.
        threads: threads for every backend (default: CPUs usable by this process).
        device: execution provider for every backend (torch uses CUDA for any GPU provider);
            auto: a GPU when both ONNX Runtime and torch can use one, else cpu.
        out: results folder for results.json, results.md and plot.png (the command's default:
            benchmarks/results/<TARGET name>-L<max length>; from Python, None writes nothing).
        force: replace an existing results folder.
        preset: "default" or "quick" (the command's --quick): the durations (`PRESETS`) of the
            fields left None.
        min_runs: timed repeats per measurement, at least.
        min_seconds: timed seconds per measurement, at least.
        max_texts: texts in the throughput sample (a seeded random sample, kept in the data's order).
        latency_texts: texts timed one by one at batch 1.
        peak_seconds: seconds per peak matmul kernel measurement (0 skips the roofline peaks).
        cache_dir: cache for Optimum exports and quantizations (default ~/.cache/bertfast/bench).
        optimum_per_channel: per-channel weight scales for Optimum's int8 (default per-tensor).
        seed: seed of the text samples.
        busy_cv: warn that the machine seemed busy when repeats vary more than this (0.10 = 10%).
        plot: write plot.png (needs matplotlib).
        name: workload name in the reports (default: the --out folder name, else TARGET's).
        note: free text recorded in the report (e.g. "random weights: speed only").
        extra: free-form entries copied into the report's config.
    """

    target: str | Path
    model_dir: str | Path | None = None
    data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = field(default=None, metadata=meta(metavar="COL"))
    label_separator: str | None = field(default=None, metadata=meta(metavar="SEP"))
    max_length: int | None = None
    batch_sizes: tuple[int, ...] | str = (1, 8, 32)
    backends: tuple[str, ...] | str = "all"
    threads: int | None = None
    device: str = field(default="auto", metadata=meta(choices=DEVICES))
    out: str | Path | None = None
    force: bool = False
    preset: str = field(default="default", metadata=meta(cli=False))
    min_runs: int | None = None
    min_seconds: float | None = None
    max_texts: int | None = None
    latency_texts: int | None = None
    peak_seconds: float | None = None
    cache_dir: str | Path | None = None
    optimum_per_channel: bool = False
    seed: int = 0
    busy_cv: float = field(default=0.10, metadata=meta(cli=False))
    plot: bool = True
    name: str | None = None
    note: str = ""
    extra: dict = field(default_factory=dict, repr=False, metadata=meta(cli=False))

    def __post_init__(self) -> None:
        from ..utils import usable_cpus

        self.target = Path(self.target)
        if not self.target.exists():
            raise BertfastError(f"TARGET {self.target} does not exist; pass an export folder or a trained model folder.")
        if not self.target.is_dir():
            raise BertfastError(f"TARGET {self.target} is a file; pass an export folder (with bertfast.json) or a model folder.")
        if self.model_dir is not None and not (Path(self.model_dir) / "config.json").is_file():
            raise BertfastError(f"--model-dir {self.model_dir} is not a model folder (no config.json).")
        if self.preset not in PRESETS:
            raise BertfastError(f"preset must be one of {', '.join(PRESETS)} (the command's --quick is quick); "
                                f"got {self.preset!r}.")
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.batch_sizes = parse_int_list(self.batch_sizes, "--batch-sizes")
        names = [self.backends] if isinstance(self.backends, str) else list(self.backends)
        names = [n.strip() for item in names for n in item.split(",") if n.strip()]
        if not names:
            raise BertfastError("--backends needs at least one backend, e.g. torch,bertfast.")
        valid = known_backends()
        for n in names:
            if n != "all" and n not in valid and not n.startswith("bertfast:"):
                raise BertfastError(
                    f"--backends: unknown backend {n!r}; valid: all, {', '.join(valid)}, bertfast:<variant>."
                )
        self.backends = tuple(dict.fromkeys(names))
        for flag, value in (("--text-pair-column", self.text_pair_column), ("--label-separator", self.label_separator)):
            if value is not None and (not isinstance(value, str) or not value or any(c in value for c in "\r\n")):
                raise BertfastError(f"{flag} must be a non-empty string without line breaks; got {value!r}.")
        # Every number checked, naming its flag: NaN or inf seconds would time forever (or
        # never), and `int("abc")` would be a traceback.
        check_int("--max-length", self.max_length, 8, optional=True)
        self.threads = check_int("--threads", usable_cpus() if self.threads is None else self.threads, 1)
        if self.device not in DEVICES:
            raise BertfastError(f"--device must be one of {', '.join(DEVICES)}; got {self.device!r}.")
        check_int("--min-runs", self.min_runs, 1)
        check_float("--min-seconds", self.min_seconds, 0, 3600)
        check_float("--peak-seconds", self.peak_seconds, 0, 600)
        check_int("--max-texts", self.max_texts, 1)
        check_int("--latency-texts", self.latency_texts, 0)
        check_int("--seed", self.seed, 0, 2**32 - 1)
        check_float("busy_cv", self.busy_cv, 0, 10, low_open=True, high_open=True, example="0.10")
        if self.out is not None:
            from ..utils import check_output_dir

            # A results folder holding the export, model or data it reads would be replaced by it.
            inputs = tuple(p for p in (self.target, self.model_dir, self.data) if p is not None and Path(p).exists())
            self.out = check_output_dir(self.out, self.force, flag="--out", inputs=inputs)
        if self.name is None:
            self.name = Path(self.out).name if self.out is not None else self.target.resolve().name

    def to_dict(self) -> dict:
        """JSON-ready copy; paths as reports show them (`paths.display_path`: never absolute)."""
        d = asdict(self)
        for k in ("target", "model_dir", "out", "cache_dir", "data"):
            d[k] = display_path(d[k])
        d["batch_sizes"] = list(self.batch_sizes)
        d["backends"] = list(self.backends)
        return d


# Flags whose command-line form differs from the field (the others come from `bertfast.flags`):
# TARGET is a positional with a metavar, the batch sizes a comma string, the preset the switch
# --quick, and the preset's fields show each preset's value.
_OWN_FORMS = ("target", "batch_sizes", *PRESETS["default"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `bertfast bench` flags: one per `BenchConfig` field, help from its docstring."""
    helps = flags.docstring_help(BenchConfig)
    default = {f.name: f.default for f in fields(BenchConfig)}
    parser.add_argument("target", metavar="TARGET", help=helps["target"])
    flags.add_arguments(parser, BenchConfig, skip=_OWN_FORMS)
    group = parser.add_argument_group("measurements", "a flag given wins over the preset (default, or --quick)")
    group.add_argument("--batch-sizes", default=",".join(map(str, default["batch_sizes"])), help=helps["batch_sizes"])
    group.add_argument("--quick", action="store_true",
                       help="the quick preset: short smoke-run durations (indicative numbers only)")
    for name, value in PRESETS["default"].items():
        by_preset = "; ".join(f"{preset} {values[name]}" for preset, values in PRESETS.items())
        group.add_argument(flags.flag_name(name), type=type(value), default=default[name],
                           help=f"{helps[name].rstrip('.')} ({by_preset})")


def from_args(args: argparse.Namespace, **overrides) -> BenchConfig:
    """The config the `bertfast bench` flags describe (`--quick` picks the quick preset)."""
    preset = {"preset": "quick"} if args.quick else {}
    return flags.from_args(BenchConfig, argparse.Namespace(**{**vars(args), **overrides}), **preset)
