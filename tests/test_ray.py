"""`bertfast predict --engine ray` on Ray Data (`bertfast.runtime.ray`).

The Ray tests share one local Ray instance (2 CPUs, no dashboard, token auth off so nothing is
written under the home folder) for the module; each has a timeout so a scheduling hang fails the
test instead of blocking CI. They skip when ray is not installed (`pip install 'bertfast[ray]'`).
The sizing rules (`plan_workers`) and input resolution are tested without Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_texts

from bertfast.errors import BertfastError, DataError
from bertfast.runtime import predict as P
from bertfast.runtime.options import RuntimeOptions
from bertfast.runtime.ray import ClassifyConfig, classify
from bertfast.runtime.ray.fs import resolve_input
from bertfast.runtime.ray.plan import WorkerPlan, plan_workers

ROWS, FILES = 3000, 4


def run_cli(argv: list[str]) -> int:
    """`bertfast predict ARGV` the way the CLI runs it (BertfastError propagates)."""
    parser = argparse.ArgumentParser()
    P.add_arguments(parser)
    return P.main(parser.parse_args(argv))


# -- sizing and inputs, no Ray -------------------------------------------------------------


@pytest.mark.parametrize(
    "nodes, kwargs, plan",
    [
        # 2-CPU machine: one 1-thread actor per core, their CPUs shrunk so one stays for I/O.
        ([{"CPU": 2}], {}, WorkerPlan(2, 0.5, 1, 0.0)),
        # 1 CPU: the actor reserves none, so the 1-CPU read/write tasks can always run (ray#44687).
        ([{"CPU": 1}], {}, WorkerPlan(1, 0.0, 1, 0.0)),
        ([{"CPU": 2}], {"workers": 1}, WorkerPlan(1, 1.0, 1, 0.0)),
        ([{"CPU": 16}], {"threads": 4}, WorkerPlan(3, 4.0, 4, 0.0)),
        # several nodes: whole CPUs per actor, so the free CPU is not split into unusable halves.
        ([{"CPU": 8}, {"CPU": 8}], {}, WorkerPlan(15, 1.0, 1, 0.0)),
        ([{"CPU": 8}, {"CPU": 8}], {"workers": 3}, WorkerPlan(3, 4.0, 4, 0.0)),
        ([{"CPU": 8, "GPU": 2}, {"CPU": 8, "GPU": 2}], {"gpus_per_worker": 0.5}, WorkerPlan(8, 1.0, 1, 0.5)),
        ([{"CPU": 4, "GPU": 1}], {"gpus_per_worker": 1}, WorkerPlan(1, 1.0, 1, 1)),
    ],
)
def test_plan_workers_fits_and_leaves_a_cpu_for_io(nodes, kwargs, plan):
    assert plan_workers(nodes, **kwargs) == plan


@pytest.mark.parametrize(
    "nodes, kwargs, message",
    [
        ([{"CPU": 2}], {"workers": 2, "threads": 1}, r"--workers 2 x --threads 1 needs 2 CPUs.*has 2.*ray#44687"),
        ([{"CPU": 2}], {"threads": 2}, r"--threads 2: no node has 2 CPUs free"),
        ([{"CPU": 4}, {"CPU": 4}], {"workers": 8}, r"--workers 8: more workers than the 7 CPUs"),
        ([{"CPU": 2}], {"gpus_per_worker": 1}, r"--gpus-per-worker 1: the Ray cluster has no GPUs"),
        ([{"CPU": 8, "GPU": 1}], {"workers": 2, "gpus_per_worker": 1}, r"needs 2 GPUs but the cluster has 1"),
    ],
)
def test_plan_workers_refuses_what_would_hang(nodes, kwargs, message):
    with pytest.raises(BertfastError, match=message):
        plan_workers(nodes, **kwargs)


def _parquet_parts(folder: Path, rows: list[tuple[str, str]], parts: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    step = -(-len(rows) // parts)
    for k in range(parts):
        chunk = rows[k * step:(k + 1) * step]
        ids = list(range(k * step, k * step + len(chunk)))
        # a nested folder too: folders are read recursively
        sub = folder / "more" if k == parts - 1 else folder
        sub.mkdir(exist_ok=True)
        pq.write_table(pa.table({"id": ids, "text": [t for t, _ in chunk], "gold": [y for _, y in chunk]}),
                       sub / f"part-{k}.parquet")
    return folder


def test_resolve_input_folder_glob_and_uri(tmp_path):
    folder = _parquet_parts(tmp_path / "in", make_texts(40), 4)
    (folder / "_SUCCESS").write_text("{}")  # markers and hidden files are not inputs
    (folder / ".part.parquet.crc").write_text("x")
    files, _, fmt = resolve_input(str(folder))
    assert fmt == "parquet" and len(files) == 4
    files, _, _ = resolve_input(str(folder / "*.parquet"))
    assert len(files) == 3  # the glob does not descend into more/
    files, _, _ = resolve_input(str(folder / "**" / "*.parquet"))
    assert len(files) == 4
    files, _, _ = resolve_input(f"file://{folder}")
    assert len(files) == 4
    (folder / "notes.csv").write_text("text\nhello\n")
    with pytest.raises(DataError, match=r"cannot tell one format.*\.csv, \.parquet.*--input-format"):
        resolve_input(str(folder))
    with pytest.raises(DataError, match="does not exist"):
        resolve_input(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no files to classify"):
        resolve_input(str(tmp_path / "nope" / "*.parquet"))


def test_config_errors_name_the_flag(tmp_path):
    (tmp_path / "out").mkdir()
    base = dict(export=tmp_path, input=tmp_path / "in", output=tmp_path / "new")
    for kwargs, message in (
        ({"gpus_per_worker": 2}, "--gpus-per-worker must be between 0 and 1"),
        ({"options": RuntimeOptions(device="cuda")}, "--device cuda with --engine ray needs --gpus-per-worker"),
        ({"workers": 0}, "--workers must be an integer >= 1"),
        ({"output_format": "txt"}, "--output-format must be one of parquet, csv, tsv, jsonl"),
        ({"output": tmp_path / "out"}, "already exists; pass --force"),
    ):
        with pytest.raises(BertfastError, match=message):
            ClassifyConfig(**(base | kwargs))


def test_config_takes_options_and_resolves_the_device(tmp_path):
    base = dict(export=tmp_path, input=tmp_path / "in", output=tmp_path / "new")
    cfg = ClassifyConfig(**base, options=RuntimeOptions(threads=2, variant="fp32"))
    assert cfg.options == RuntimeOptions(device="cpu", threads=2, variant="fp32")  # auto + no GPU share
    assert ClassifyConfig(**base, gpus_per_worker=0.5).options.device == "cuda"  # auto + GPU share
    tensorrt = RuntimeOptions(device="tensorrt")
    assert ClassifyConfig(**base, options=tensorrt, gpus_per_worker=1).options.device == "tensorrt"
    with pytest.raises(BertfastError, match="--device tensorrt with --engine ray needs --gpus-per-worker"):
        ClassifyConfig(**base, options=tensorrt)
    with pytest.raises(BertfastError, match="--device cpu contradicts --gpus-per-worker"):
        ClassifyConfig(**base, options=RuntimeOptions(device="cpu"), gpus_per_worker=1)
    with pytest.raises(TypeError, match="threads"):  # the 0.1.0 keywords are gone: options=RuntimeOptions(...)
        ClassifyConfig(**base, threads=2)


def test_no_import_cycle():
    """The engine never imports predict.py, nor Ray itself until a job runs."""
    code = ("import sys, bertfast.runtime.ray; "
            "assert 'bertfast.runtime.predict' not in sys.modules and 'ray' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ray_flags_need_engine_ray(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("text\nhello\n")
    with pytest.raises(BertfastError, match="--workers needs --engine ray"):
        run_cli([str(tmp_path), "--input", str(src), "--output", str(tmp_path / "o.csv"), "--workers", "2"])


# -- Ray Data on a local 2-CPU instance ----------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module: 2 CPUs, no dashboard, no token written to ~/.ray."""
    ray = pytest.importorskip("ray", reason="needs pip install 'bertfast[ray]'")
    env = {
        "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
        # Ray packs Parquet files into read tasks of up to 128 MiB, and one read block goes to one
        # actor: these tiny files get a block each, so that both workers of the pool get work.
        "RAY_DATA_PARQUET_BIN_PACKING_BYTES": "1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def parquet_folder(tmp_path_factory) -> Path:
    return _parquet_parts(tmp_path_factory.mktemp("ray-in") / "texts", make_texts(ROWS, seed=7), FILES)


def _read_folder(folder: Path) -> list[dict]:
    import pyarrow.dataset as pads

    return pads.dataset(str(folder), format="parquet").to_table().to_pylist()


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_ray_engine_matches_single_process(ray_local, tiny_export, parquet_folder, tmp_path):
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    # Reference: single-process `bertfast predict` on the same rows in one file. fp32, because
    # int8 *dynamic* quantization scales activations per batch, so its scores (and a near-tie's
    # label) depend on which rows share a batch in either engine.
    whole = tmp_path / "all.parquet"
    pq.write_table(pads.dataset(str(parquet_folder), format="parquet").to_table(), whole)
    P.predict(P.PredictConfig(export=tiny_export, input=whole, output=tmp_path / "single.parquet",
                              options=RuntimeOptions(device="cpu", variant="fp32"), progress=False))
    single = {r["id"]: r for r in pq.read_table(tmp_path / "single.parquet").to_pylist()}

    out = tmp_path / "preds"
    assert run_cli([str(tiny_export), "--input", str(parquet_folder), "--output", str(out), "--engine", "ray",
                    "--workers", "2", "--variant", "fp32", "--chunk-size", "500", "--no-progress"]) == 0
    rows = _read_folder(out)
    assert len(rows) == ROWS and {r["id"] for r in rows} == set(single)
    assert list(rows[0]) == ["id", "text", "gold", "label", "score"]  # original columns first, then ours
    for r in rows:
        ref = single[r["id"]]
        assert (r["text"], r["gold"], r["label"]) == (ref["text"], ref["gold"], ref["label"])
        assert r["score"] == pytest.approx(ref["score"], abs=1e-4)
    assert pq.read_schema(next(out.glob("*.parquet"))).field("score").type == pa.float32()
    done = json.loads((out / "_SUCCESS").read_text())
    assert done["rows"] == ROWS and done["input_files"] == FILES
    assert done["plan"] == {"workers": 2, "cpus": 0.5, "threads": 1, "gpus": 0.0}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_ray_csv_in_csv_out_keeps_gold_label(ray_local, tiny_export, tmp_path):
    import csv

    folder = tmp_path / "csv"
    folder.mkdir()
    rows = make_texts(300, seed=3)
    for k in range(2):
        with open(folder / f"p{k}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "text", "label"])
            # ids like 007 must come back as written: every CSV column is read as text
            w.writerows([f"{k}{i:03d}", t, y] for i, (t, y) in enumerate(rows[k * 150:(k + 1) * 150]))
    out = tmp_path / "preds.csv"
    classify(ClassifyConfig(export=tiny_export, input=folder, output=out, workers=1,
                            options=RuntimeOptions(variant="fp32"), progress=False))
    got = []
    for part in sorted(out.glob("*.csv")):
        with open(part, newline="") as f:
            got += list(csv.DictReader(f))
    assert len(got) == 300 and "0007" in {r["id"] for r in got}
    assert set(got[0]) == {"id", "text", "label", "pred_label", "pred_score"}  # the gold `label` is kept
    assert {r["label"] for r in got} <= {"sport", "tech", "politics"}


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_ray_worker_error_surfaces_and_leaves_no_output(ray_local, tiny_export, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"text": ["fine", None, "also fine"]}), tmp_path / "in" / "a.parquet")
    with pytest.raises(DataError, match="null in 'text'"):
        classify(ClassifyConfig(export=tiny_export, input=tmp_path / "in", output=tmp_path / "out", workers=1,
                                progress=False))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bertfast-tmp")]


@pytest.mark.ray
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gpus_per_worker": 1}, "the Ray cluster has no GPUs"),
        ({"workers": 2, "options": RuntimeOptions(threads=1)}, r"needs 2 CPUs but the Ray cluster has 2.*ray#44687"),
        ({"text_column": "body"}, r"no column 'body'; columns found: 'id', 'text', 'gold'"),
    ],
)
def test_ray_refuses_fast_instead_of_hanging(ray_local, tiny_export, parquet_folder, tmp_path, kwargs, message):
    with pytest.raises(BertfastError, match=message):
        classify(ClassifyConfig(export=tiny_export, input=parquet_folder, output=tmp_path / "out", progress=False,
                                **kwargs))
    assert not (tmp_path / "out").exists()
