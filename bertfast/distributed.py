"""Classify folders of files too big for one machine on Ray Data (`bertfast predict --engine ray`).

`classify(ClassifyConfig(export=..., input="s3://bucket/texts/*.parquet", output="s3://bucket/preds"))`
and `bertfast predict EXPORT --input ... --output DIR --engine ray` are the same call. Ray Data
reads the input files (Parquet, CSV, TSV, JSONL, TXT) in parallel, a pool of `--workers` actors
each loads the export once as a `bertfast.Classifier` (ONNX Runtime threads = the CPUs the actor
reserved; `--gpus-per-worker` puts it on a GPU, fractions share one), and the predictions are
written as a folder of part files with every input column plus `label` and `score` (the same
columns and values as single-process `bertfast predict`).

Sizing never hangs: the pool is checked against `ray.cluster_resources()` per node before anything
starts, and one CPU is always left to Ray Data's own list/read/write tasks (an actor pool holding
every CPU starves them and the job waits forever: ray-project/ray#44687). Asking for GPUs on a
cluster without them fails at once instead of waiting for GPUs that never come.

A local output folder is written to a hidden sibling and renamed when complete; on object stores
(s3://, gs://, ...), where there is no rename, the folder is complete when its `_SUCCESS` file
exists (written last, with the run's figures). `classify_dataset` applies the model to a Ray
Dataset you built yourself (any Ray Data source), for pipelines that do more than classify.

Needs `pip install 'bertfast[ray]'`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob as globlib
import json
import logging
import math
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import BertfastError, DataError, MissingDependencyError
from .runtime.batching import AGGREGATE, LONG_TEXT
from .runtime.providers import DEVICES

log = logging.getLogger(__name__)

RAY_INSTALL = "pip install 'bertfast[ray]'"
INPUT_FORMATS = ("parquet", "csv", "tsv", "jsonl", "txt")
OUTPUT_FORMATS = ("parquet", "csv", "tsv", "jsonl")
_EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt", ".text": "txt",
}
# Ray Data's ListFiles operator asks for one whole CPU (not configurable), and reads and writes
# ask for one each; this much stays free of actors so they can always be scheduled.
IO_RESERVE_CPUS = 1.0
SUCCESS = "_SUCCESS"


@dataclass
class ClassifyConfig:
    """What `bertfast predict --engine ray` does; each field is the CLI flag of the same name.

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
        threads: CPUs each actor reserves, and its ONNX Runtime threads; default: the cluster's
            CPUs left after the I/O reserve shared among the workers.
        address: Ray cluster to join (`auto`, `ray://head:10001`, `HOST:6379`); default: start a
            local Ray instance with the CPUs this process may use, shut down at the end.
        device: auto|cpu|cuda; auto: cuda when `gpus_per_worker` > 0, else cpu.
        variant, long_text, stride, aggregate, batch_tokens, max_batch_size, max_length: passed
            to `Classifier.load` in each actor.
        chunk_size: rows per `map_batches` call (the unit Ray Data hands an actor).
        top_k: labels per row, best first.
        all_scores: also write one `prob_<label>` column per class.
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
    threads: int | None = None
    address: str | None = None
    device: str = "auto"
    variant: str | None = None
    long_text: str = "truncate"
    stride: int | None = None
    aggregate: str = "mean"
    batch_tokens: int = 8192
    max_batch_size: int = 256
    max_length: int | None = None
    chunk_size: int = 4096
    top_k: int = 1
    all_scores: bool = False
    force: bool = False
    progress: bool = True

    def __post_init__(self):
        self.export, self.input, self.output = str(self.export), str(self.input), str(self.output)
        from .runtime.predict import check_flags

        check_flags(
            choices=(("--input-format", self.input_format, INPUT_FORMATS),
                     ("--output-format", self.output_format, OUTPUT_FORMATS),
                     ("--device", self.device, DEVICES), ("--long-text", self.long_text, LONG_TEXT),
                     ("--aggregate", self.aggregate, AGGREGATE)),
            ints=(("--workers", self.workers, 1), ("--threads", self.threads, 1), ("--chunk-size", self.chunk_size, 1),
                  ("--top-k", self.top_k, 1), ("--batch-tokens", self.batch_tokens, 1),
                  ("--max-batch-size", self.max_batch_size, 1), ("--stride", self.stride, 0),
                  ("--max-length", self.max_length, 3)),
            context=" with --engine ray",
        )
        g = self.gpus_per_worker
        if not isinstance(g, int | float) or isinstance(g, bool) or not 0 <= g <= 1:
            raise BertfastError(
                f"--gpus-per-worker must be between 0 and 1 (a fraction shares one GPU between actors; "
                f"one ONNX Runtime session uses one GPU); got {g!r}."
            )
        if self.device == "cuda" and g == 0:
            raise BertfastError("--device cuda with --engine ray needs --gpus-per-worker (e.g. 1, or 0.5 to share a GPU).")
        if self.device == "cpu" and g > 0:
            raise BertfastError("--device cpu contradicts --gpus-per-worker > 0; drop one of them.")
        self.device = "cuda" if g > 0 else "cpu"
        if self.output_format is None:
            ext = _EXTENSIONS.get(posixpath.splitext(self.output.rstrip("/"))[1].lower())
            self.output_format = ext if ext in OUTPUT_FORMATS else "parquet"
        if _is_uri(self.output) == _is_uri(self.input) and _strip_file(self.output) == _strip_file(self.input):
            raise BertfastError(f"--output {self.output} is the input; choose another output folder.")
        if not _is_uri(self.output):
            out = Path(self.output)
            if out.exists() and not out.is_dir():
                raise BertfastError(f"--output {out} is a file; with --engine ray the output is a folder of part files.")
            if out.exists() and not self.force:
                raise BertfastError(f"--output {out} already exists; pass --force to replace it or choose another folder.")


@dataclass(frozen=True)
class WorkerPlan:
    """How the actor pool is sized on a cluster (see `plan_workers`)."""

    workers: int
    cpus: float  # logical CPUs each actor reserves in Ray
    threads: int  # ONNX Runtime intra-op threads per actor
    gpus: float


def plan_workers(
    nodes: list[dict[str, float]],
    workers: int | None = None,
    threads: int | None = None,
    gpus_per_worker: float = 0.0,
) -> WorkerPlan:
    """Size the actor pool so that it fits the cluster and cannot deadlock Ray Data.

    Args:
        nodes: resources of each alive node, e.g. `[{"CPU": 16, "GPU": 2}, ...]`.
        workers: actors wanted (None: as many as fit).
        threads: CPUs (= ONNX Runtime threads) per actor (None: share what is left).
        gpus_per_worker: GPUs per actor (0 < g <= 1), or 0 for CPU actors.

    Returns:
        The plan. One CPU stays free of actors (`IO_RESERVE_CPUS`) for Ray Data's own tasks.
        Actors get fractional CPUs only on a one-node cluster: across nodes, whole CPUs keep
        the free CPU in one piece on some node instead of scattered halves no task can use.

    Raises:
        BertfastError: the request cannot fit; the message says what the cluster has.
    """
    cpus = [float(n.get("CPU", 0)) for n in nodes]
    gpus = [float(n.get("GPU", 0)) for n in nodes]
    total_cpu, total_gpu = sum(cpus), sum(gpus)
    if not nodes or total_cpu <= 0:
        raise BertfastError("the Ray cluster reports no CPUs; check `ray status` (or --address).")
    # Reserve I/O CPUs on the largest node, where a task asking for one whole CPU can run.
    big = max(range(len(cpus)), key=cpus.__getitem__)
    free = list(cpus)
    free[big] = max(0.0, free[big] - IO_RESERVE_CPUS)
    usable = sum(free)
    single_node = len(nodes) == 1

    if gpus_per_worker > 0:
        if total_gpu == 0:
            raise BertfastError(
                f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has no GPUs "
                f"(resources: {total_cpu:g} CPUs, 0 GPUs), so the actors would wait forever. "
                "Join a cluster with GPU nodes (--address), or drop --gpus-per-worker to run on CPU."
            )
        fit_gpu = sum(math.floor(g / gpus_per_worker + 1e-9) for g in gpus)
        if workers is not None and workers > fit_gpu:
            raise BertfastError(
                f"--workers {workers} x --gpus-per-worker {gpus_per_worker:g} needs {workers * gpus_per_worker:g} GPUs "
                f"but the cluster has {total_gpu:g} ({fit_gpu} such workers fit); lower --workers or --gpus-per-worker."
            )
        n = workers or fit_gpu
        # A GPU actor needs a CPU to tokenize; one each if there is room, else a fair share.
        cpu_each = float(threads) if threads else min(1.0, usable / n if single_node else 1.0)
        plan = WorkerPlan(n, cpu_each, max(1, math.ceil(cpu_each - 1e-9)), gpus_per_worker)
        _check_cpu_fit(plan, free, total_cpu, explicit_threads=threads is not None)
        return plan

    if threads is None and workers is None and single_node:
        # One single-threaded session per core (the best throughput per core for batch
        # inference); the cores' share of the I/O reserve makes each actor's CPU a fraction.
        workers = max(1, math.floor(total_cpu))
    if threads is not None:
        cpu_each = float(threads)
    elif workers is not None:
        cpu_each = usable / workers
        if not single_node:
            # The most whole CPUs per actor with which `workers` actors still pack into the nodes.
            cpu_each = float(next((c for c in range(math.floor(cpu_each), 0, -1) if _fits(free, c) >= workers), 0))
    else:
        cpu_each = 1.0
    if workers is None:
        workers = _fits(free, cpu_each) if cpu_each > 0 else 1
        if workers == 0:
            raise BertfastError(
                f"--threads {threads}: no node has {cpu_each:g} CPUs free after the {IO_RESERVE_CPUS:g} kept for "
                f"Ray Data's read/write tasks (nodes: {', '.join(f'{c:g}' for c in cpus)} CPUs); lower --threads."
            )
    if cpu_each == 0 and not single_node:
        raise BertfastError(
            f"--workers {workers}: more workers than the {usable:g} CPUs left after the {IO_RESERVE_CPUS:g} kept "
            f"for Ray Data's read/write tasks on this {len(nodes)}-node cluster; lower --workers."
        )
    # ORT threads match the CPUs reserved, rounded up so a 0.5-CPU actor still gets a thread.
    plan = WorkerPlan(workers, cpu_each, max(1, math.ceil(cpu_each - 1e-9)), 0.0)
    _check_cpu_fit(plan, free, total_cpu, explicit_threads=threads is not None)
    if plan.workers * plan.threads > total_cpu:
        log.warning("%d workers x %d threads on %g CPUs: the cores are oversubscribed; fewer --workers is "
                    "usually faster", plan.workers, plan.threads, total_cpu)
    return plan


def _fits(free: list[float], cpu_each: float) -> int:
    return sum(math.floor(f / cpu_each + 1e-9) for f in free)


def _check_cpu_fit(plan: WorkerPlan, free: list[float], total_cpu: float, explicit_threads: bool) -> None:
    if plan.cpus == 0:
        return
    if _fits(free, plan.cpus) < plan.workers:
        what = f"--workers {plan.workers} x --threads {plan.cpus:g}" if explicit_threads else f"--workers {plan.workers}"
        raise BertfastError(
            f"{what} needs {plan.workers * plan.cpus:g} CPUs but the Ray cluster has {total_cpu:g}, of which "
            f"{IO_RESERVE_CPUS:g} stays free for Ray Data's read/write tasks (an actor pool holding every CPU "
            "hangs, ray-project/ray#44687); lower --workers or --threads."
        )


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
        from .manifest import load_manifest

        load_manifest(cfg.export)  # a bad export fails here, not in every actor
    started = _connect(ray, cfg.address)
    try:
        plan = plan_workers(_alive_nodes(ray), cfg.workers, cfg.threads, cfg.gpus_per_worker)
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
        ds = _read(ray, files, fs, fmt, cfg.text_column)
        ds = classify_dataset(
            ds, cfg.export, text_column=cfg.text_column, plan=plan, device=cfg.device, variant=cfg.variant,
            long_text=cfg.long_text, stride=cfg.stride, aggregate=cfg.aggregate, batch_tokens=cfg.batch_tokens,
            max_batch_size=cfg.max_batch_size, max_length=cfg.max_length, top_k=cfg.top_k,
            all_scores=cfg.all_scores, batch_size=cfg.chunk_size, text_output=cfg.output_format != "parquet",
        )
        with _output_dir(cfg.output, cfg.force) as (target, out_fs):
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
            with out_fs.open_output_stream(_join(target, SUCCESS)) as f:
                f.write((json.dumps(summary, indent=2) + "\n").encode())
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
    text_column: str = "text",
    plan: WorkerPlan | None = None,
    workers: int | None = None,
    threads: int | None = None,
    gpus_per_worker: float = 0.0,
    device: str | None = None,
    variant: str | None = None,
    long_text: str = "truncate",
    stride: int | None = None,
    aggregate: str = "mean",
    batch_tokens: int = 8192,
    max_batch_size: int = 256,
    max_length: int | None = None,
    top_k: int = 1,
    all_scores: bool = False,
    batch_size: int = 4096,
    text_output: bool = False,
):
    """Add prediction columns to a Ray Dataset with a pool of `Classifier` actors.

    Args:
        ds: a `ray.data.Dataset` with a string column `text_column` (Ray must be initialized).
        export: export folder (readable on every node) or URI.
        text_column: the column to classify.
        plan: a `WorkerPlan`; default: `plan_workers` on the live cluster with `workers`,
            `threads`, `gpus_per_worker`.
        device: cpu|cuda; default: cuda when the plan has GPUs.
        variant, long_text, stride, aggregate, batch_tokens, max_batch_size, max_length:
            passed to `Classifier.load`.
        top_k, all_scores: prediction columns, as in `bertfast predict`.
        batch_size: rows per call of an actor.
        text_output: scores as rounded float64 (for CSV/JSON) instead of float32 (Parquet).

    Returns:
        The lazy Dataset with `label`, `score` (...) appended; `pred_` prefixed if the input
        already has such columns.
    """
    ray = _require_ray()
    from .runtime.predict import _prediction_names

    if plan is None:
        plan = plan_workers(_alive_nodes(ray), workers, threads, gpus_per_worker)
    columns = list(ds.schema().names)
    if text_column not in columns:
        raise DataError(
            f"the input has no column {text_column!r}; columns found: {', '.join(map(repr, columns)) or 'none'}. "
            "Pass --text-column NAME."
        )
    labels = _labels(export)
    names = _prediction_names(columns, labels, top_k, all_scores) if labels else None
    load_kwargs = dict(
        device=device or ("cuda" if plan.gpus else "cpu"), variant=variant, threads=plan.threads,
        long_text=long_text, stride=stride, aggregate=aggregate, batch_tokens=batch_tokens,
        max_batch_size=max_batch_size, max_length=max_length,
        # Actors share their node's cores with Ray's tasks and each other: spinning threads
        # would burn CPU the neighbours need.
        allow_spinning=False,
    )
    return ds.map_batches(
        _Predictor,
        fn_constructor_kwargs=dict(
            export=str(export), load_kwargs=load_kwargs, text_column=text_column, names=names,
            top_k=top_k, all_scores=all_scores, text_output=text_output,
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

    def __init__(self, export: str, load_kwargs: dict, text_column: str, names: list[str] | None,
                 top_k: int, all_scores: bool, text_output: bool):
        from .runtime.classifier import Classifier

        self.clf = Classifier.load(_local_export(export), **load_kwargs)
        self.text_column, self.top_k, self.all_scores, self.text_output = text_column, top_k, all_scores, text_output
        self.names = names

    def __call__(self, batch):
        import pyarrow as pa

        from .runtime.predict import _prediction_names, _prediction_values

        if self.names is None:  # export given as a URI: labels known only once loaded
            self.names = _prediction_names(batch.column_names, self.clf.labels, self.top_k, self.all_scores)
        col = batch.column(self.text_column)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise DataError(f"column {self.text_column!r} has type {col.type}, not string; pass the text column with --text-column.")
        if col.null_count:
            raise DataError(f"a row has no text (null in {self.text_column!r}); fill or drop it.")
        texts = col.to_pylist()
        if texts:
            values = _prediction_values(self.clf.predict_proba(texts), self.clf.labels, self.top_k, self.all_scores)
        else:
            values = [[] for _ in self.names]
        score_type = pa.float64() if self.text_output else pa.float32()
        for name, v in zip(self.names, values):
            is_label = name.startswith(("label", "pred_label"))
            batch = batch.append_column(name, pa.array(v, pa.string() if is_label else score_type))
        return batch


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
    from .utils import usable_cpus

    # Ray's default is the host's core count; in a container limited to a few CPUs that would
    # let the pool oversubscribe them, exactly like ONNX Runtime's own default.
    ray.init(num_cpus=usable_cpus(), include_dashboard=False)
    return True


def _alive_nodes(ray) -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _strip_file(path: str) -> str:
    path = path.removeprefix("file://")
    return path if _is_uri(path) else str(Path(path).expanduser().resolve())


def _join(base: str, name: str) -> str:
    return posixpath.join(base, name)  # pyarrow filesystems take "/" paths, local ones included


def _fs_for(path: str):
    """(pyarrow filesystem, path inside it) for a local path or URI."""
    import pyarrow.fs as pafs

    if _is_uri(path):
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for unknown schemes or no credentials
            raise BertfastError(f"cannot open {path}: {e}") from None
    return pafs.LocalFileSystem(), str(Path(path.removeprefix("file://")).expanduser().resolve())


def resolve_input(spec: str, input_format: str | None = None) -> tuple[list[str], object, str]:
    """The files named by a file, folder, glob or URI, their filesystem and their format.

    Raises:
        DataError: nothing matches, or the files mix formats and no `input_format` was given.
    """
    import pyarrow.fs as pafs

    fs, path = _fs_for(spec)
    magic = any(c in path for c in "*?[")
    if magic:
        parts = path.split("/")
        first = next(i for i, p in enumerate(parts) if any(c in p for c in "*?["))
        base = "/".join(parts[:first]) or "/"
        if isinstance(fs, pafs.LocalFileSystem):
            files = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        else:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
            files = sorted(i.path for i in infos if i.type == pafs.FileType.File and _glob_match(i.path, path))
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DataError(f"--input {spec} does not exist; pass a file, a folder or a glob of files to classify.")
        if info.type == pafs.FileType.File:
            files = [path]
        else:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            files = sorted(
                i.path for i in infos
                if i.type == pafs.FileType.File and not _hidden(posixpath.relpath(i.path, path))
                and (input_format or _EXTENSIONS.get(posixpath.splitext(i.path)[1].lower()))
            )
    if not files:
        raise DataError(f"--input {spec}: no files to classify found ({', '.join(sorted(set(_EXTENSIONS)))}).")
    if input_format:
        return files, fs, input_format
    found = {_EXTENSIONS.get(posixpath.splitext(f)[1].lower()) for f in files}
    if None in found or len(found) > 1:
        exts = sorted({posixpath.splitext(f)[1] or "(none)" for f in files})
        raise DataError(
            f"--input {spec}: cannot tell one format from the file extensions {', '.join(exts)}; "
            f"pass --input-format ({', '.join(INPUT_FORMATS)}) or narrow --input with a glob."
        )
    return files, fs, found.pop()


def _glob_match(path: str, pattern: str) -> bool:
    # fnmatch's `*` crosses `/`; that is what `**` means and close enough for `*` on object stores.
    return fnmatch.fnmatchcase(path, pattern.replace("**/", "*"))


def _hidden(rel: str) -> bool:
    return any(p.startswith((".", "_")) for p in rel.split("/"))


def _read(ray, files: list[str], fs, fmt: str, text_column: str):
    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs

    kw = {} if isinstance(fs, pafs.LocalFileSystem) else {"filesystem": fs}
    if fmt == "parquet":
        return ray.data.read_parquet(files, **kw)
    if fmt in ("csv", "tsv"):
        delim = "," if fmt == "csv" else "\t"
        # Every column as text, like single-process predict: no ids turned into ints, no "NA" into null.
        header = _csv_header(files[0], fs, delim)
        if text_column not in header:
            raise DataError(
                f"--input {files[0]} has no column {text_column!r}; columns found: {', '.join(map(repr, header))}. "
                "Pass --text-column NAME."
            )
        return ray.data.read_csv(
            files, **kw, parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types={c: "string" for c in header}, quoted_strings_can_be_null=False),
        )
    if fmt == "jsonl":
        return ray.data.read_json(files, lines=True, **kw)
    return ray.data.read_text(files, drop_empty_lines=False, **kw)


def _csv_header(path: str, fs, delim: str) -> list[str]:
    import csv
    import io

    with fs.open_input_stream(path) as raw:
        head = raw.read(1 << 20).decode("utf-8-sig", errors="replace")
    return next(csv.reader(io.StringIO(head), delimiter=delim), [])


def _labels(export: str | Path) -> list[str] | None:
    if _is_uri(str(export)):
        return None
    from .manifest import load_manifest

    return load_manifest(export).labels


def _local_export(export: str) -> str:
    """A local folder holding the export: the path itself, or a per-actor download of a URI."""
    if not _is_uri(export):
        return export
    import pyarrow.fs as pafs

    dst = tempfile.mkdtemp(prefix="bertfast-export-")
    fs, path = _fs_for(export)
    pafs.copy_files(path, dst, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return dst


@contextlib.contextmanager
def _output_dir(output: str, force: bool) -> Iterator[tuple[str, object]]:
    """Yield (folder to write, filesystem). Local: a hidden sibling renamed onto `output` at the
    end (`atomic_dir`). Object stores have no rename: the folder itself, `_SUCCESS` written last."""
    fs, path = _fs_for(output)
    if _is_uri(output):
        import pyarrow.fs as pafs

        info = fs.get_file_info(path)
        if info.type != pafs.FileType.NotFound:
            if not force:
                raise BertfastError(f"--output {output} already exists; pass --force to replace it or choose another folder.")
            fs.delete_dir_contents(path, missing_dir_ok=True)
        yield path, fs
        return
    from .utils import atomic_dir

    with atomic_dir(path) as tmp:
        yield str(tmp), fs


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


def _count_rows(target: str, fs) -> int:
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    infos = fs.get_file_info(pafs.FileSelector(target, recursive=True))
    n = 0
    for i in infos:
        if i.type == pafs.FileType.File and i.path.endswith(".parquet"):
            with fs.open_input_file(i.path) as f:
                n += pq.read_metadata(f).num_rows
    return n


def _unwrap(e: BaseException) -> BaseException:
    """The BertfastError a worker raised, out of Ray's wrappers; `e` itself if there is none.

    Errors in a batch arrive as the original exception in the cause chain; errors in an actor's
    `__init__` (a bad export or variant) only as text in an ActorDiedError's message.
    """
    from . import errors

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
    return e
