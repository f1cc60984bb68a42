"""The Ray Data engine of `bertfast predict --engine ray`: `classify` and `classify_dataset`.

Ray Data reads the input files (Parquet, CSV, TSV, JSONL, TXT) in parallel, a pool of `workers`
actors each loads the export once as a `bertfast.Classifier` (ONNX Runtime threads = the CPUs the
actor reserved; `gpus_per_worker` puts it on a GPU, fractions share one), and the predictions are
written as a folder of part files with every input column plus the prediction columns of
`runtime/outputs.py` (the same columns and values as single-process `bertfast predict`, for every
task). A pair export's two texts travel as two columns of the same row (`--text-pair-column`, or
`--query-column` for reranking), so a pair is never split across batches.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import asdict
from pathlib import Path

from ...errors import BertfastError, DataError, MissingDependencyError
from ..io import Predictions, model_inputs, pair_spec
from ..options import RuntimeOptions
from ..outputs import arrow_type, check_task_flags
from .config import AUTO_CPU, AUTO_GPU, ClassifyConfig
from .fs import _count_rows, _csv_header, _is_uri, _local_export, _output_dir, resolve_input
from .plan import WorkerPlan, plan_workers

log = logging.getLogger(__name__)

RAY_INSTALL = "pip install 'bertfast[ray]'"
__all__ = ["classify", "classify_dataset"]


def classify(cfg: ClassifyConfig) -> Path | str:
    """Classify every row under `cfg.input` on Ray Data and write the folder `cfg.output`.

    Starts a local Ray instance (or joins `cfg.address`), sizes the actor pool with
    `plan_workers`, and writes the predictions atomically (see the module docstring).

    Returns:
        The output folder (a Path, or the URI string for object stores).

    Raises:
        BertfastError: bad flags, no input files, a missing text column, a pool that cannot fit
            the cluster, a failed worker (the worker's own message, e.g. a null text).
        MissingDependencyError: Ray is not installed (names the pip install).
    """
    ray = _require_ray()
    files, fs, fmt = resolve_input(cfg.input, cfg.input_format)
    if not _is_uri(cfg.export):
        from ...manifest import load_manifest

        # A bad export, or flags its task cannot honour, fail here, not in every actor.
        check_task_flags(load_manifest(cfg.export), top_k=cfg.top_k, pair_flag=cfg.pair_column()[1],
                         separator=cfg.separator(cfg.output_format), where=f"export {cfg.export}")
    started = _connect(ray, cfg.address)
    try:
        plan = plan_workers(_alive_nodes(ray), cfg.workers, cfg.options.threads, cfg.gpus_per_worker)
        log.info("Ray pool: %d workers x %g CPUs (%d ONNX Runtime threads)%s", plan.workers, plan.cpus, plan.threads,
                 f" x {plan.gpus:g} GPU" if plan.gpus else "")
        if len(_alive_nodes(ray)) > 1:
            local = [f"{flag} {v}" for flag, v in (("--input", cfg.input), ("--output", cfg.output), ("export", cfg.export))
                     if not _is_uri(v)]
            if local:
                log.warning("%s: local paths on a %d-node cluster must be shared storage (NFS, the image) seen alike "
                            "by every node, or workers miss inputs and write parts to their own disks; prefer s3:// "
                            "or gs:// URIs.", ", ".join(local), len(_alive_nodes(ray)))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = cfg.progress
        t0 = time.perf_counter()
        pair_column, pair_flag, _ = cfg.pair_column()
        ds = _read(ray, files, fs, fmt, [(cfg.text_column, "--text-column"), (pair_column, pair_flag)])
        ds = classify_dataset(
            ds, cfg.export, options=cfg.options, text_column=cfg.text_column, plan=plan, top_k=cfg.top_k,
            all_scores=cfg.all_scores, batch_size=cfg.chunk_size, text_output=cfg.output_format != "parquet",
            text_pair_column=cfg.text_pair_column, query_column=cfg.query_column,
            label_separator=cfg.separator(cfg.output_format),
        )
        with _output_dir(cfg.output, cfg.force) as out:
            target, out_fs = out.path, out.fs
            try:
                _write(ds, target, out_fs, cfg.output_format)
            except Exception as e:
                # A worker's DataError (e.g. a null text) arrives wrapped in Ray's exceptions;
                # surface it as itself so the CLI prints its one line.
                err = _unwrap(e)
                if err is e:
                    raise
                raise err from None
            secs = time.perf_counter() - t0
            rows = _count_rows(target, out_fs) if cfg.output_format == "parquet" else None
            summary = {
                "rows": rows, "seconds": round(secs, 3),
                "rows_per_second": round(rows / secs, 1) if rows else None,
                "input_files": len(files), "input_format": fmt, "output_format": cfg.output_format,
                "plan": asdict(plan), "cluster": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")},
                "nodes": len(_alive_nodes(ray)), "address": cfg.address, "export": cfg.export,
                "ray": ray.__version__,
            }
            out.finish((json.dumps(summary, indent=2) + "\n").encode())
    finally:
        if started:
            ray.shutdown()
    log.info("wrote %s rows to %s in %.1f s (%s rows/s; %d Ray workers)", rows if rows is not None else "all",
             cfg.output, secs, f"{rows / secs:.0f}" if rows else "?", plan.workers)
    return cfg.output if _is_uri(cfg.output) else Path(cfg.output)


def classify_dataset(
    ds,
    export: str | Path,
    *,
    options: RuntimeOptions | None = None,
    text_column: str = "text",
    plan: WorkerPlan | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    top_k: int = 1,
    all_scores: bool = False,
    batch_size: int = 4096,
    text_output: bool = False,
    text_pair_column: str | None = None,
    query_column: str | None = None,
    label_separator: str | None = None,
):
    """Add prediction columns to a Ray Dataset with a pool of `Classifier` actors.

    Args:
        ds: a `ray.data.Dataset` with a string column `text_column` (Ray must be initialized).
        export: export folder (readable on every node) or URI.
        text_column: the column to classify.
        options: the inference settings each actor passes to `Classifier.load`; `device`
            "auto" means the GPU provider when the plan has GPUs, else cpu; `threads` comes from
            the plan; actors never spin (they share cores with Ray's tasks).
        plan: a `WorkerPlan`; default: `plan_workers` on the live cluster with `workers`,
            `options.threads`, `gpus_per_worker`.
        top_k, all_scores: prediction columns, as in `bertfast predict`.
        batch_size: rows per call of an actor.
        text_output: scores as rounded float64 (for CSV/JSON) instead of float32 (Parquet).
        text_pair_column, query_column: pair exports: the column of the other text of each
            pair (pairs: (text_column, text_pair_column), or (query_column, text_column)).
        label_separator: multi-label exports: join each row's `labels` into one string with it
            (for CSV); None: a list<string> column.

    Returns:
        The lazy Dataset with the task's prediction columns (`runtime/outputs.py`: `label`,
        `score`, ...) appended; `pred_` prefixed if the input already has such columns.
    """
    ray = _require_ray()
    opts = options or RuntimeOptions()
    if not isinstance(opts, RuntimeOptions):
        raise BertfastError(f"options must be a RuntimeOptions; got {type(opts).__name__}.")
    if plan is None:
        plan = plan_workers(_alive_nodes(ray), workers, opts.threads, gpus_per_worker)
    pair = pair_spec(text_pair_column, query_column)
    columns = list(ds.schema().names)
    for col, flag in ((text_column, "--text-column"), pair[:2]):
        if col is not None and col not in columns:
            raise DataError(
                f"the input has no column {col!r}; columns found: {', '.join(map(repr, columns)) or 'none'}. "
                f"Pass {flag} NAME."
            )
    manifest = _manifest(export)
    plan_kw = dict(top_k=top_k, all_scores=all_scores, separator=label_separator)
    preds = None
    if manifest is not None:  # else each actor checks, once it has downloaded the export
        check_task_flags(manifest, top_k=top_k, pair_flag=pair[1], separator=label_separator, where=f"export {export}")
        preds = Predictions.plan(columns, manifest, **plan_kw)
    device = opts.device if opts.device != "auto" else (AUTO_GPU if plan.gpus else AUTO_CPU)
    # Actors share their node's cores with Ray's tasks and each other: spinning threads would
    # burn CPU the neighbours need.
    load_options = opts.replace(device=device, threads=plan.threads, allow_spinning=False)
    return ds.map_batches(
        _Predictor,
        fn_constructor_kwargs=dict(
            export=str(export), options=load_options, text_column=text_column, pair=pair, preds=preds,
            plan_kw=plan_kw, text_output=text_output,
        ),
        batch_format="pyarrow",
        batch_size=batch_size,
        # `concurrency=` is deprecated in Ray 2.5x+: a fixed-size pool via the compute strategy.
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus or None,
    )


class _Predictor:
    """The `map_batches` callable: one Classifier per actor, loaded once, reused for every batch."""

    def __init__(self, export: str, options: RuntimeOptions, text_column: str, pair: tuple, preds: Predictions | None,
                 plan_kw: dict, text_output: bool):
        from ..classifier import Classifier

        self.clf = Classifier.load(_local_export(export), options=options)
        self.text_column, self.pair, self.preds, self.text_output = text_column, pair, preds, text_output
        self.plan_kw = plan_kw
        if preds is None:  # export given as a URI: its task known only once loaded
            check_task_flags(self.clf, top_k=plan_kw["top_k"], pair_flag=pair[1], separator=plan_kw["separator"],
                             where=f"export {export}")

    def __call__(self, batch):
        import pyarrow as pa

        if self.preds is None:
            self.preds = Predictions.plan(batch.column_names, self.clf, **self.plan_kw)
        pair_column, pair_flag, query_first = self.pair
        texts = self._texts(batch, self.text_column, "--text-column")
        others = None if pair_column is None else self._texts(batch, pair_column, pair_flag)
        if texts:
            values = self.preds.values(self.clf.predict_proba(model_inputs(texts, others, query_first)))
        else:
            values = [[] for _ in self.preds.names]
        score_type = pa.float64() if self.text_output else pa.float32()
        lists = self.preds.separator is None
        for name, v in zip(self.preds.names, values):
            batch = batch.append_column(name, pa.array(v, arrow_type(name, score_type, lists)))
        return batch

    def _texts(self, batch, column: str, flag: str) -> list[str]:
        import pyarrow as pa

        col = batch.column(column)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise DataError(f"column {column!r} has type {col.type}, not string; pass a text column with {flag}.")
        if col.null_count:
            what = "text" if self.pair[0] is None else "text of its pair"
            raise DataError(f"a row has no {what} (null in {column!r}, {flag}); fill or drop it.")
        return col.to_pylist()


# -- Ray, inputs, outputs ------------------------------------------------------------------


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(f"--engine ray needs Ray Data, which is not installed ({e}); run: {RAY_INSTALL}") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Initialize Ray unless it already is; True if we did (and so shut it down at the end)."""
    if ray.is_initialized():
        return False
    # Inside `ray job submit` / a KubeRay RayJob, RAY_ADDRESS names the cluster to join.
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as e:
            raise BertfastError(f"--address {address}: cannot join the Ray cluster ({e}); check `ray status` there.") from None
        return True
    from ...utils import usable_cpus

    # Ray's default is the host's core count; in a container limited to a few CPUs that would
    # let the pool oversubscribe them, exactly like ONNX Runtime's own default.
    ray.init(num_cpus=usable_cpus(), include_dashboard=False)
    return True


def _alive_nodes(ray) -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def _read(ray, files: list[str], fs, fmt: str, needed: list[tuple[str | None, str | None]]):
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    kw = {} if isinstance(fs, pafs.LocalFileSystem) else {"filesystem": fs}
    if fmt == "parquet":
        return ray.data.read_parquet(files, **kw)
    if fmt in ("csv", "tsv"):
        delim = "," if fmt == "csv" else "\t"
        # Every column as text, like single-process predict: no ids turned into ints, no "NA" into null.
        header = _csv_header(files[0], fs, delim)
        for col, flag in needed:
            if col is not None and col not in header:
                raise DataError(
                    f"--input {files[0]} has no column {col!r}; columns found: {', '.join(map(repr, header))}. "
                    f"Pass {flag} NAME."
                )
        return ray.data.read_csv(
            files, **kw, parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={c: "string" for c in header}, quoted_strings_can_be_null=False),
        )
    if fmt == "jsonl":
        return ray.data.read_json(files, lines=True, **kw)
    from .text import read_lines  # not ray.data.read_text: it splits rows at U+2028 & co.

    return read_lines(ray, files, **kw)


def _manifest(export: str | Path):
    """The export's manifest when it is local (None for a URI: the actors download it)."""
    if _is_uri(str(export)):
        return None
    from ...manifest import load_manifest

    return load_manifest(export)


def _write(ds, target: str, fs, fmt: str) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    kw = {} if isinstance(fs, pafs.LocalFileSystem) else {"filesystem": fs}
    if fmt == "parquet":
        ds.write_parquet(target, **kw)
    elif fmt in ("csv", "tsv"):
        delim = "," if fmt == "csv" else "\t"
        ds.write_csv(target, **kw, arrow_csv_args_fn=lambda: {"write_options": pacsv.WriteOptions(delimiter=delim)})
    else:
        ds.write_json(target, **kw, pandas_json_args_fn=lambda: {"force_ascii": False})


def _unwrap(e: BaseException) -> BaseException:
    """The BertfastError a worker raised, out of Ray's wrappers; `e` itself if there is none.

    Errors in a batch arrive as the original exception in the cause chain; errors in an actor's
    `__init__` (a bad export or variant) only as text in an ActorDiedError's message.
    """
    from ... import errors

    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, BertfastError):
            return type(cur)(str(cur))
        stack += [cur.__cause__, cur.__context__, getattr(cur, "cause", None)]
    found = re.findall(r"bertfast\.errors\.(\w+): (.+)", str(e))
    if found:
        name, msg = found[-1]
        cls = getattr(errors, name, BertfastError)
        return (cls if isinstance(cls, type) and issubclass(cls, BertfastError) else BertfastError)(msg.strip())
    # Malformed input found by Arrow's readers (a CSV row with an open quote, JSON whose types
    # change): a data problem, told in one line instead of a traceback.
    found = re.findall(r"(?:ArrowInvalid|ArrowTypeError|ArrowNotImplementedError): (.+)", str(e))
    if found:
        return DataError(f"the input is malformed: {found[-1].strip()}; fix the file (or --input-format).")
    return e
