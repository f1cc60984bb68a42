"""Classify every row of a CSV/TSV/JSONL/Parquet/TXT file with an export and write the predictions.

The input is streamed in chunks (`--chunk-size` rows), so memory stays bounded on millions of
rows, and the next chunk is read and tokenized while the model runs on the current one. The
output keeps every input column and adds the export's task's prediction columns (`outputs.py`):
single-label `label` and `score` (plus `label_2`, `score_2`, ... with `--top-k`, and
`prob_<label>` per class with `--all-scores`), multi-label `labels` and `score_<label>` per label,
regression `score`; if the input already has a column of that name, ours get a `pred_` prefix,
and if it has that too, the run is refused. TXT input has one text per line (column `text`); TXT
output has one line per input row (`label<TAB>score`, the joined labels, or the score).

A pair export (cross-encoder, `task.pair` in its manifest) classifies two texts per row:
`--text-pair-column COL` names the second (pairs are (--text-column, COL)), or, for reranking,
`--query-column Q` names the first (pairs are (Q, --text-column)). One of the two is required
for a pair export and refused for a single-text one; a row missing either text is an error
naming its data row and column. The
output is written to a temporary file and renamed at the end: an interrupted or failed run (a
malformed row found mid-file included) never leaves a file under the final name. Reading and
writing live in `runtime/readers.py` and `runtime/writers.py` (what each refuses is listed
there); `--engine ray` runs the same classification on Ray Data (`runtime/ray/`).

`-i -` reads standard input (format: `--input-format`, else sniffed from the first non-blank
line: a JSON object is JSONL, a comma/tab-separated header holding `--text-column` is CSV/TSV,
anything else one text per line); `-o -` writes standard output (JSONL unless
`--output-format`), each chunk as soon as it is classified, so `| head` works: a closed pipe
ends the run quietly with exit 0. Progress and logs go to stderr; `--quiet` keeps warnings only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from itertools import chain
from pathlib import Path

from .. import flags
from ..errors import BertfastError
from ..flags import meta
from ..formats import NAMES, format_of
from .io import (
    WRITERS,
    Chunk,
    PredictionRun,
    Predictions,
    Stdin,
    check_io_flags,
    check_labels_fit_format,
    is_stdio,
    model_inputs,
    read_inputs,
    sniff_format,
)
from .options import RuntimeOptions
from .options import add_arguments as add_option_arguments
from .outputs import check_task_flags

log = logging.getLogger(__name__)

ENGINES = ("single", "ray")
STDOUT_FORMAT = "jsonl"  # `-o -` without --output-format: one self-describing object per line


@dataclass
class PredictConfig(PredictionRun):
    """What `bertfast predict` does; every field is the CLI flag of the same name.

    Attributes:
        export: export folder written by `bertfast export` (--engine ray: also a URI).
        input: file to classify (csv, tsv, jsonl, parquet, txt), or - for standard input;
            --engine ray: also a folder, glob or URI (s3://...).
        output: predictions file, written atomically (refused if it exists, unless --force), or -
            for standard output (rows as they are classified, not atomic); --engine ray: a folder
            of part files (local or URI).
        input_format: default: from --input's extension; -i -: guessed from the first non-blank
            line (a JSON object: jsonl; a comma/tab-separated header holding --text-column:
            csv/tsv; else txt; see `io.sniff_format`).
        output_format: default: from --output's extension (-o -: jsonl), else the input format.
        text_column: column (CSV/TSV/Parquet) or field (JSONL) holding the text.
        output_prefix: name the prediction columns PREFIX<name> (p2_: p2_label, p2_score, ...);
            default: label, score, ... or, when the input has those, pred_label, ...; a prefixed
            name the input already has is refused.
        options: the inference settings, passed to `Classifier.load` (the --device, --threads,
            --long-text, ... flags): `PredictConfig(export, input, output,
            options=RuntimeOptions(device="cpu", threads=2))`.
        chunk_size: rows read, classified and written at a time (bounds memory).
        top_k: single-label exports: labels per row, best first (adds label_2, score_2, ...).
        all_scores: single-label exports: add a prob_<label> column per class (multi-label
            exports always write score_<label>).
        text_pair_column: pair exports: the column holding the second text of each pair (pairs:
            --text-column, COL).
        query_column: pair exports, reranking: the column holding the query, the first text of
            each pair (pairs: COL, --text-column); instead of --text-pair-column.
        label_separator: multi-label exports: joins each row's labels in CSV/TSV/TXT output
            (default |); JSONL/Parquet hold a list.
        force: replace an existing --output.
        progress: a progress bar with rows/s on stderr (--no-progress: none).
    """

    export: Path
    input: Path = field(metadata=meta(option=True, short="-i"))
    output: Path = field(metadata=meta(option=True, short="-o"))
    input_format: str | None = field(default=None, metadata=meta(choices=NAMES))
    output_format: str | None = field(default=None, metadata=meta(choices=NAMES))
    text_column: str = "text"
    output_prefix: str | None = field(default=None, metadata=meta(metavar="PREFIX"))

    def __post_init__(self):
        self.export, self.input, self.output = Path(self.export), Path(self.input), Path(self.output)
        check_io_flags(self.input_format, self.output_format, self.chunk_size, self.top_k)
        self.check_pair_flags(self.text_column)
        if self.output_prefix is not None and (not isinstance(self.output_prefix, str) or not self.output_prefix):
            raise BertfastError(f"--output-prefix must be a non-empty string; got {self.output_prefix!r}.")
        if not isinstance(self.options, RuntimeOptions):
            raise BertfastError(f"options must be a RuntimeOptions; got {type(self.options).__name__}.")
        if not is_stdio(self.input):
            if not self.input.is_file():
                what = "is a folder" if self.input.is_dir() else "does not exist"
                raise BertfastError(f"--input {self.input} {what}; pass the file to classify, or - for standard input.")
            self.input_format = self.input_format or format_of(self.input, "--input")
        # Standard input's format, unless given, is sniffed once `predict` reads it.
        self.output_format = (self.output_format or (STDOUT_FORMAT if is_stdio(self.output) else format_of(self.output))
                              or self.input_format)
        self.check_output_format()
        if not is_stdio(self.output):
            self._check_output_path()

    def check_output_format(self) -> None:
        """TXT output holds one label and score per line (None: not known until stdin is sniffed)."""
        if self.output_format == "txt" and (self.top_k > 1 or self.all_scores):
            raise BertfastError(
                "--top-k > 1 and --all-scores need a columnar output (csv, tsv, jsonl, parquet), not txt; "
                "change --output's extension or pass --output-format."
            )

    def _check_output_path(self) -> None:
        if (not is_stdio(self.input) and self.output.exists()
                and self.output.resolve() == self.input.resolve()):
            raise BertfastError(f"--output {self.output} is the input file; choose another output path.")
        if self.output.is_dir():
            raise BertfastError(f"--output {self.output} is a folder; pass a file path.")
        if self.output.exists() and not self.force:
            raise BertfastError(f"--output {self.output} already exists; pass --force to replace it or choose another path.")


def predict(cfg: PredictConfig) -> Path:
    """Classify `cfg.input` with the export `cfg.export` and write `cfg.output`.

    Returns:
        The path of the predictions file (`-` for standard output).

    Raises:
        BertfastError: bad input file (empty, malformed, missing text column, non-text value,
            a column the predictions would overwrite: the message names the line or row and
            field), unusable export or device. Nothing is left under `cfg.output`; on standard
            output, the chunks before the bad row have been written already.
        BrokenPipeError: standard output was closed by its reader (`main` ends quietly on it).
    """
    from tqdm import tqdm

    from ..manifest import load_manifest
    from ..utils import atomic_file
    from .classifier import Classifier

    # The export's task decides which flags and columns apply: checked before any row is read.
    manifest = load_manifest(cfg.export)
    source, in_fmt, out_fmt = _source(cfg)
    pair_column, pair_flag, query_first = cfg.pair_column()
    separator = cfg.separator(out_fmt)
    check_task_flags(manifest, top_k=cfg.top_k, pair_flag=pair_flag, separator=separator, where=f"export {cfg.export}")
    check_labels_fit_format(out_fmt, manifest.labels)
    chunks = read_inputs(source, in_fmt, cfg.text_column, cfg.chunk_size, pair_column,
                         pair_flag or "--text-pair-column")
    first = next(chunks)  # fail on an empty file or a missing column before loading the model
    preds = Predictions.plan(first.columns, manifest, top_k=cfg.top_k, all_scores=cfg.all_scores,
                             separator=separator, txt=out_fmt == "txt", src=first.src, prefix=cfg.output_prefix)
    clf = Classifier.load(cfg.export, options=cfg.options)
    to_stdout = is_stdio(cfg.output)
    pending: deque[Chunk] = deque()

    def inputs() -> Iterator[list]:
        # Consumed by the classifier's tokenizer thread, one chunk ahead of the model.
        for chunk in chain([first], chunks):
            pending.append(chunk)
            yield model_inputs(chunk.texts, chunk.pair_texts, query_first)

    t0 = time.perf_counter()
    rows = 0
    # Standard output cannot be published atomically: rows go out as they are classified.
    with clf, nullcontext(cfg.output) if to_stdout else atomic_file(cfg.output) as tmp, tqdm(
        total=first.total_rows, unit=" rows", unit_scale=True, disable=not cfg.progress, file=sys.stderr,
        desc="predict", dynamic_ncols=True,
    ) as bar:
        writer = WRITERS[out_fmt](tmp, out_fmt, prefix=preds.prefix)
        try:
            for proba in clf.iter_proba(inputs()):
                chunk = pending.popleft()
                writer.write(chunk, list(preds.names), preds.values(proba))
                if to_stdout:  # the reader downstream (`| head`) sees each chunk when it is done
                    writer.flush()
                rows += len(chunk.texts)
                bar.update(len(chunk.texts))
        finally:
            writer.close()
        stats = clf.last_stats
    secs = time.perf_counter() - t0
    log.info(
        "wrote %d rows to %s in %.1f s (%.0f rows/s; %s variant on %s; %.0f%% padding)",
        rows, "standard output" if to_stdout else cfg.output, secs, rows / max(secs, 1e-9), clf.variant, clf.device,
        100 * stats.get("padding_ratio", 0.0),
    )
    return cfg.output


def _source(cfg: PredictConfig) -> tuple[Path | Stdin, str, str]:
    """What to read, its format and the output's: standard input's format is sniffed here
    (reading its first lines), unless `--input-format` names it."""
    if not is_stdio(cfg.input):
        return cfg.input, cfg.input_format, cfg.output_format
    if sys.stdin is not None and sys.stdin.isatty():  # else the run seems to hang, waiting for typing
        log.info("--input -: reading texts from the terminal, one per line; end with Ctrl-D")
    source = Stdin()
    in_fmt = cfg.input_format
    if in_fmt is None:
        in_fmt = sniff_format(source.first_line(), cfg.text_column)
        log.info("--input -: reading %s (guessed from the first line; --input-format sets it)", in_fmt)
    if cfg.output_format is None:  # a file output without a known extension: the input's format
        cfg.output_format = in_fmt
        cfg.check_output_format()
    return source, in_fmt, cfg.output_format


# -- CLI -----------------------------------------------------------------------------------


# Flags of the fields PredictConfig inherits from `io.PredictionRun` (the shared I/O fields).
_INHERITED = {
    "text_pair_column": meta(metavar="COL"), "query_column": meta(metavar="COL"),
    "label_separator": meta(metavar="SEP"), "progress": meta(negative_only=True),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of `bertfast predict`: one per `PredictConfig` field, one per `RuntimeOptions`
    field, and the `--engine ray` flags (the `ClassifyConfig` fields of its own); all generated
    by `bertfast.flags` from the fields and their docstring entries."""
    # Not Ray itself: that is imported only when a job runs.
    from .ray.config import ClassifyConfig

    # Paths stay str here: Path("s3://b/k") collapses to "s3:/b/k" (PredictConfig makes local paths Paths).
    # Its own fields first (export, --input, --output, ...), then the inherited ones.
    inherited = tuple(f.name for f in fields(PredictionRun))
    own = tuple(f.name for f in fields(PredictConfig) if f.name not in inherited)
    flags.add_arguments(p, PredictConfig, skip=inherited)
    flags.add_arguments(p, PredictConfig, skip=("options", *own), metadata=_INHERITED)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and warnings only on stderr")
    add_option_arguments(p.add_argument_group("inference settings (passed to Classifier.load)"))
    g = p.add_argument_group("scale out (--engine ray; see bertfast.runtime.ray, needs pip install 'bertfast[ray]')")
    g.add_argument("--engine", choices=ENGINES, default="single",
                   help="single: this process; ray: a Ray Data actor pool over every file of --input")
    flags.add_arguments(g, ClassifyConfig, skip=tuple(f.name for f in fields(PredictConfig)))


def main(args: argparse.Namespace) -> int:
    """Run `bertfast predict` from parsed flags (`--engine ray`: `bertfast.runtime.ray.classify`)."""
    given = dict(vars(args))
    if not given.get("quiet"):
        return _main(args, given)
    # Progress lines are INFO on the `bertfast` logger (cli.main sets it); warnings still show.
    # Restored afterwards: a caller in this process keeps its own logging.
    logger = logging.getLogger("bertfast")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return _main(args, {**given, "progress": False})
    finally:
        logger.setLevel(level)


def _main(args: argparse.Namespace, given: dict) -> int:
    opts = RuntimeOptions.from_namespace(args)
    if given.get("engine", "single") == "ray":
        for flag, what in (("--input", "standard input"), ("--output", "standard output")):
            if is_stdio(given.get(flag[2:])):
                raise BertfastError(f"{flag} - ({what}) needs the single-process engine; --engine ray reads and "
                                    "writes files, folders or URIs.")
        if given.get("output_prefix") is not None:
            raise BertfastError("--output-prefix needs the single-process engine; drop --engine ray or the prefix.")
        # Imported here: the Ray engine imports io.py, never this module (no cycle), and Ray
        # itself is only needed for --engine ray.
        from .ray import ClassifyConfig, classify

        classify(flags.from_args(ClassifyConfig, argparse.Namespace(**given), options=opts))
        return 0
    for flag, value, default in (
        ("--workers", given.get("workers"), None), ("--gpus-per-worker", given.get("gpus_per_worker", 0.0), 0.0),
        ("--address", given.get("address"), None),
    ):
        if value != default:
            raise BertfastError(f"{flag} needs --engine ray (the single-process engine runs in this process only).")
    cfg = flags.from_args(PredictConfig, argparse.Namespace(**given), options=opts)
    try:
        predict(cfg)
    except BrokenPipeError:
        if not is_stdio(cfg.output):
            raise
        # The reader of our standard output left (`| head`): that ends the run, not an error.
        # Python's recipe (docs, signal module): point stdout at devnull so that the flush at
        # exit does not raise again.
        log.debug("standard output was closed; stopped early")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0
