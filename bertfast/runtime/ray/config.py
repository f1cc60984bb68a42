"""`ClassifyConfig`: what `bertfast predict --engine ray` does, checked before Ray starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import BertfastError
from ...formats import FORMATS, format_of
from ..io import PredictionRun, check_io_flags, require_int
from ..options import RuntimeOptions
from ..providers import PROVIDERS
from .fs import _is_uri, normalize_location, overlap

# Ray Data writes folders of part files in the columnar formats; Parquet (the default) first.
OUTPUT_FORMATS = ("parquet", *(f.name for f in FORMATS.values() if f.columnar and f.name != "parquet"))
# What `device="auto"` means for GPU actors: the first GPU provider that "auto" may pick (CUDA;
# TensorRT only when asked for by name, its engine build takes minutes).
AUTO_GPU = next(p.name for p in PROVIDERS.values() if p.gpu and p.auto)
AUTO_CPU = next(p.name for p in PROVIDERS.values() if not p.gpu)


@dataclass
class ClassifyConfig(PredictionRun):
    """What `bertfast predict --engine ray` does; each field is the CLI flag of the same name
    (`bertfast predict` generates the flags of the fields `PredictConfig` lacks from here).

    Attributes:
        export: export folder written by `bertfast export` (local, or a URI such as
            `s3://bucket/exports/reviews`, which each actor downloads once). A local path must be
            readable on every node of the cluster (shared file system or container image).
        input: a file, a folder (every file with a supported extension below it, recursively;
            hidden and `_` files skipped), a glob (`data/*.parquet`, `s3://b/texts/**/*.parquet`)
            or a URI of one of those. On a multi-node cluster use shared storage.
        output: folder of prediction part files to write (refused if it exists, unless `force`).
        input_format: parquet|csv|tsv|jsonl|txt; default: from the files' extension.
        output_format: parquet|csv|tsv|jsonl; default: from `output`'s extension, else parquet.
        text_column: column (Parquet/CSV/TSV) or field (JSONL) holding the text.
        workers: actors in the pool; default: as many as fit (one per GPU share with
            `gpus_per_worker`, else one per CPU left after the I/O reserve, or per `threads` CPUs).
        gpus_per_worker: GPUs per actor, fractions allowed (0.5: two actors share a GPU); 0: CPU.
        address: Ray cluster to join (`auto`, `ray://head:10001`, `HOST:6379`); default: start a
            local Ray instance with the CPUs this process may use, shut down at the end.
        options: the inference settings each actor passes to `Classifier.load`
            (`ClassifyConfig(..., options=RuntimeOptions(threads=2, variant="fp32"))`). Here
            `threads` is also the CPUs each actor reserves (default: the cluster's CPUs left
            after the I/O reserve, shared among the workers), and `device` must agree with
            `gpus_per_worker`: auto means a GPU provider when `gpus_per_worker` > 0, else cpu.
            Actors never spin (`allow_spinning=False`): they share cores with Ray's tasks.
        chunk_size: rows per `map_batches` call (the unit Ray Data hands an actor).
        top_k: labels per row, best first (single-label exports).
        all_scores: also write one `prob_<label>` column per class (single-label exports).
        text_pair_column: the column of the second text of each row's pair (pair exports; see
            `runtime.io.PredictionRun`).
        query_column: the column of the query, the first text of each row's pair (pair exports,
            reranking; instead of `text_pair_column`).
        label_separator: joins multi-label `labels` in CSV/TSV output (default `|`; Parquet and
            JSONL hold a list).
        force: replace an existing output folder.
        progress: Ray Data's progress bars on stderr.
    """

    export: str | Path
    input: str | Path
    output: str | Path
    input_format: str | None = None
    output_format: str | None = None
    text_column: str = "text"
    workers: int | None = None
    gpus_per_worker: float = 0.0
    address: str | None = None

    def __post_init__(self):
        self.export, self.input, self.output = str(self.export), str(self.input), str(self.output)
        check_io_flags(self.input_format, self.output_format, self.chunk_size, self.top_k,
                       output_formats=OUTPUT_FORMATS, context=" with --engine ray")
        self.check_pair_flags(self.text_column)
        require_int("--workers", self.workers, 1)
        if not isinstance(self.options, RuntimeOptions):
            raise BertfastError(f"options must be a RuntimeOptions; got {type(self.options).__name__}.")
        g = self.gpus_per_worker
        if not isinstance(g, int | float) or isinstance(g, bool) or not 0 <= g <= 1:
            raise BertfastError(
                f"--gpus-per-worker must be between 0 and 1 (a fraction shares one GPU between actors; "
                f"one ONNX Runtime session uses one GPU); got {g!r}."
            )
        device = self.options.device
        if device != "auto" and PROVIDERS[device].gpu and g == 0:
            raise BertfastError(
                f"--device {device} with --engine ray needs --gpus-per-worker (e.g. 1, or 0.5 to share a GPU)."
            )
        if device != "auto" and not PROVIDERS[device].gpu and g > 0:
            raise BertfastError(f"--device {device} contradicts --gpus-per-worker > 0; drop one of them.")
        if device == "auto":
            # Resolved here, not in each actor: an actor holding a GPU share must use it.
            self.options = self.options.replace(device=AUTO_GPU if g > 0 else AUTO_CPU)
        if self.output_format is None:
            fmt = format_of(self.output)
            self.output_format = fmt if fmt in OUTPUT_FORMATS else "parquet"
        if overlap(self.output, self.input):
            # Compared normalised (a trailing slash, `//` or `..` must not hide it): an output inside
            # the input is read back by the next run, and --force on an input inside it deletes the input.
            out, inp = normalize_location(self.output), normalize_location(self.input)
            what = "is the input" if out == inp else "is inside the input" if out.startswith(inp) else "holds the input"
            raise BertfastError(
                f"--output {self.output} {what} ({inp}); choose an output folder outside the input, and vice versa."
            )
        if not _is_uri(self.output):
            out = Path(self.output)
            if out.exists() and not out.is_dir():
                raise BertfastError(f"--output {out} is a file; with --engine ray the output is a folder of part files.")
            if out.exists() and not self.force:
                raise BertfastError(f"--output {out} already exists; pass --force to replace it or choose another folder.")
