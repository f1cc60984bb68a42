"""`BenchConfig`: what to benchmark, on which data, for how long.

The backend names come from the registry in `bench.backends` and the devices from the
execution-provider table (`runtime.providers`); this module only reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..checks import check_float, check_int
from ..errors import BertfastError
from ..runtime.providers import DEVICES
from .backends import FACTORIES, STANDARD_BACKENDS
from .paths import display_path

__all__ = ["BenchConfig", "DEVICES", "PRESETS", "STANDARD_BACKENDS", "known_backends", "parse_int_list"]

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
    """Settings of one `bertfast bench` run; every field is a CLI flag of the same name.

    Args:
        target: an export folder (holding `bertfast.json`) or a trained model folder.
        model_dir: the PyTorch model folder for the torch/optimum backends (default: the
            export manifest's `source.model_dir`, or TARGET itself when it is a model folder).
        data: texts to replay: anything `bertfast predict` accepts or a built-in dataset name.
            Default: the export's `eval.jsonl` (its held-out split), else `bbc-news`.
        text_column: text column of `data`.
        label_column: label column of `data` (for the task's quality metric; optional in the data).
        text_pair_column: column of `data` holding the second text of each pair; required for an
            export of a text-pair model benchmarked on other data than its own `eval.jsonl`
            (which holds `text_pair`), refused for a single-text export.
        label_separator: multi-label data in CSV/TSV: the string joining a row's labels
            ("sport|politics"); JSONL/Parquet rows hold lists and need none.
        max_length: tokens per text (default: the export's max length, else 128).
        batch_sizes: batch sizes for the throughput measurements ("1,8,32").
        backends: comma list or "all": torch-seed, torch, torch-int8, optimum, optimum-int8,
            bertfast (= every variant), bertfast:default (the export's default) or bertfast:<variant>.
        threads: intra-op threads for every backend (default: CPUs usable by this process).
        device: auto or an execution provider of `runtime.providers.PROVIDERS` (cpu, cuda,
            tensorrt); auto picks a GPU provider when ONNX Runtime and torch can both use it.
        out: results folder (results.json, results.md, plot.png); None writes nothing.
        force: replace an existing results folder.
        preset: "default" or "quick" (short smoke-run durations); explicit fields win.
        min_runs: timed repeats per measurement, at least.
        min_seconds: timed seconds per measurement, at least.
        max_texts: texts in the throughput sample (a seeded random sample, original order).
        latency_texts: texts timed one by one for batch-1 latency.
        peak_seconds: seconds per peak matmul kernel measurement (0 skips the roofline peaks).
        cache_dir: where Optimum exports/quantizations are cached (default ~/.cache/bertfast).
        optimum_per_channel: per-channel weight scales for Optimum's int8 (default per-tensor).
        seed: seed of the text samples.
        busy_cv: warn that the machine seemed busy when repeats vary more than this (0.10 = 10%).
        plot: write plot.png (needs matplotlib).
        name: workload name in reports (default: the out folder name or the target name).
        note: free text recorded in the report (e.g. "random weights: speed only").
    """

    target: str | Path
    model_dir: str | Path | None = None
    data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    label_separator: str | None = None
    max_length: int | None = None
    batch_sizes: tuple[int, ...] | str = (1, 8, 32)
    backends: tuple[str, ...] | str = "all"
    threads: int | None = None
    device: str = "auto"
    out: str | Path | None = None
    force: bool = False
    preset: str = "default"
    min_runs: int | None = None
    min_seconds: float | None = None
    max_texts: int | None = None
    latency_texts: int | None = None
    peak_seconds: float | None = None
    cache_dir: str | Path | None = None
    optimum_per_channel: bool = False
    seed: int = 0
    busy_cv: float = 0.10
    plot: bool = True
    name: str | None = None
    note: str = ""
    extra: dict = field(default_factory=dict, repr=False)  # free-form, copied into the report

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
            raise BertfastError(f"--preset must be one of {', '.join(PRESETS)}; got {self.preset!r}.")
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
