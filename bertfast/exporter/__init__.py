"""Export a fine-tuned classifier to ONNX, fuse it, quantize it, and prove every variant on real data.

`bertfast export MODEL_DIR --out exports/NAME` == `bertfast.export(ExportConfig(model_dir=..., out=...))`.
Each variant is validated on held-out labeled data (the validation split `bertfast train` saved,
or `--eval-data FILE`) against the PyTorch fp32 model in the task's terms (`bertfast.tasks`:
single-label, multi-label, regression; single texts or pairs; reranking per query), and the
default variant the runtime loads is the fastest one that loses at most `--max-metric-drop`
points of the task's primary metric and agrees with PyTorch on at least `--min-agreement`
percent of the inputs. The folder is built in a temporary sibling and moved into place only
when complete.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import flags
from ..errors import BertfastError, ExportError, ModelError, require
from ..families import family_of
from ..manifest import Manifest, load_manifest
from ..utils import atomic_dir, check_output_dir, library_versions, sha256_file, usable_cpus
from . import compress as _compress_mod
from . import evalset as _evalset
from . import mixed as _mixed
from . import variants as _variants
from . import window as _window
from .budget import choose_batch_tokens
from .config import ExportConfig
from .report import choose_defaults as _choose_defaults
from .report import format_table
from .validate import ExportReference, Gate
from .variants import VARIANTS

__all__ = ["ExportConfig", "export", "format_table", "VARIANTS"]

log = logging.getLogger(__name__)


@dataclass
class _Source:
    """The user's model as the export reads it, checked, before anything is written."""

    model_dir: Path
    config: object  # the checkpoint's config.json as transformers reads it
    model: object  # the PyTorch model (the reference)
    tokenizer: object
    family: object
    training: dict
    max_length: int
    limit: int  # the model's position limit
    ev: _evalset.EvalSet
    activation: str
    preset: str
    threads: int
    unknown_token_rate: float | None = None  # [UNK] share of the eval texts (preflight)
    calibration: list = field(default_factory=list)  # int8-static calibration inputs, never validated on
    calibration_note: str = ""


def export(cfg: ExportConfig) -> Path:
    """Build, validate and write the export folder; returns its path (`format_table` of its
    manifest is the table the CLI prints).

    A variant other than fp32 that fails to build is recorded in the manifest with its reason
    and the export goes on; it fails only when fp32 (which every variant derives from) fails.

    Raises:
        BertfastError (and subclasses) with a message that says what to fix. On any failure the
        previous export at `cfg.out` (if any) is left as it was.
    """
    t_start = time.time()
    out = Path(cfg.out)
    src = _load_source(cfg, out)
    wanted = cfg.variant_list(src.preset)
    progress = _Progress(len(wanted) + 3 + bool(cfg.window_search) + (len(_compress_mod.students.RECIPES) if cfg.compress else 0))
    with atomic_dir(out) as tmp:
        ctx, m = _build(cfg, src, tmp, wanted, progress)
        reference = _reference(cfg, src, m, progress)
        _validate(cfg, ctx, m, reference)
        if cfg.compress:
            _compress(cfg, src, ctx, m, reference, progress)
        _choose(cfg, m, tmp, reference, progress)
        m.export_seconds = round(time.time() - t_start, 1)
        m.write(tmp)
        shutil.rmtree(ctx.scratch)
        load_manifest(tmp)  # the folder we are about to publish must read back cleanly
    if cfg.compress:
        shutil.rmtree(_compress_mod.work_dir(out), ignore_errors=True)  # the search is done: nothing to resume
    return out


def _load_source(cfg: ExportConfig, out: Path) -> _Source:
    """Check the model folder, the output folder and the eval data; load the PyTorch model."""
    from ..training.checkpoints import model_length_limit
    from . import preflight, quantize
    from .onnx import check_model_dir, load_torch_model

    model_dir = Path(cfg.model_dir)
    config = check_model_dir(model_dir)
    preflight.check_tokenizer_files(model_dir)  # before loading: transformers falls back to an empty vocab
    mo, oo = model_dir.resolve(), out.resolve()
    if mo == oo or mo in oo.parents or oo in mo.parents:
        raise BertfastError(
            f"--out {out} overlaps the model folder {model_dir}: the export would replace the trained model. "
            "Choose another --out (e.g. exports/<name>)."
        )
    # An export folder holding the model or the eval data would be replaced by the export.
    check_output_dir(out, cfg.force, inputs=(cfg.model_dir, cfg.eval_data, cfg.agreement_data))
    require("transformers", "train")  # a missing extra is named before any model loads
    training = _read_training(model_dir)
    model = load_torch_model(model_dir)
    limit = model_length_limit(model.config)
    max_length = cfg.max_length or training.get("max_length") or min(limit, 512)
    if max_length > limit:
        raise BertfastError(f"--max-length {max_length} is over the model's limit of {limit} positions.")
    tokenizer = preflight.load_tokenizer(model_dir)
    ev = _evalset.load(cfg, model_dir, model.config, training)
    # PyTorch reads the folder's tokenizer too, so a wrong one would pass validation: refuse it here.
    unknown = preflight.check_tokenizer(tokenizer, model.config, ev, int(max_length), model_dir, cfg.allow_unknown_tokens)
    if ev.id2label != {int(k): v for k, v in model.config.id2label.items()}:  # --label-names
        model.config.id2label, model.config.label2id = dict(ev.id2label), {v: k for k, v in ev.id2label.items()}
    activation = ev.task.activation_for(model.config)
    if model.config.problem_type is None and activation == ev.task.activation:
        # The exported config.json says what was validated: transformers' pipelines pick the
        # activation from it (sigmoid for one output unless problem_type says regression).
        model.config.problem_type = ev.task.problem_type
    threads = cfg.threads or usable_cpus()
    require("torch", "train").set_num_threads(threads)
    preset = quantize.check_preset(cfg.quantize)
    calibrates = any(VARIANTS[n].calibrated for n in cfg.variant_list(preset))
    ev, calibration, note = _evalset.calibration(ev, model_dir, cfg.calibration_samples if calibrates else 0)
    if cfg.compress:
        _compress_mod.distill_inputs(cfg, model_dir, ev.pair)  # no texts to distill on: say so before any work
    return _Source(model_dir, config, model, tokenizer, family_of(config), training, int(max_length), int(limit),
                   ev, activation, preset, threads, unknown,
                   calibration, note)


def _build(cfg: ExportConfig, src: _Source, tmp: Path, wanted: list[str], progress: _Progress):
    """The ONNX graph, the tokenizer and config, every wanted variant and the first manifest."""
    from .onnx import graph_inputs, to_onnx

    scratch = tmp / ".work"
    scratch.mkdir()
    model, tokenizer, ev = src.model, src.tokenizer, src.ev
    progress.say(f"exporting {type(model).__name__} to ONNX (opset {cfg.opset}, dynamic batch/sequence axes)")
    raw = to_onnx(model, scratch, cfg.opset)
    inputs = src.family.check_inputs(graph_inputs(raw))
    tokenizer.model_max_length = src.max_length
    tokenizer.save_pretrained(str(tmp))
    model.config.save_pretrained(str(tmp))
    if not (tmp / "tokenizer.json").exists():
        raise ExportError("the tokenizer has no tokenizer.json (fast tokenizer) to ship with the export.")
    ctx = _variants.BuildContext(
        folder=tmp, scratch=scratch, raw=raw, config=src.config, preset=src.preset, tokenizer=tokenizer,
        calibration_texts=src.calibration, inputs=inputs,
        max_length=src.max_length, calibration_samples=cfg.calibration_samples,
    )
    m = Manifest(
        bertfast_version=library_versions(("bertfast",)).get("bertfast", "0"),
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # As the user gave it, never resolved: committed results must not carry this machine's paths.
        source={"model_dir": str(cfg.model_dir), "sha256": _weights_hash(src.model_dir),
                "model_type": model.config.model_type, "family": src.family.model_type,
                "architecture": type(model).__name__},
        id2label=dict(ev.id2label), max_length=src.max_length, model_max_length=src.limit, inputs=inputs,
        task=_task_block(ev, src.activation, cfg.agreement),
        opset=cfg.opset, quantization_preset=src.preset, max_accuracy_drop=cfg.budget,
        tokenizer={"file": "tokenizer.json", "pad_token_id": int(tokenizer.pad_token_id or 0),
                   "lowercase": bool(getattr(tokenizer, "do_lower_case", False))},
        eval_data={"source": ev.source or ev.extra_source, "rows": len(ev), "file": "eval.jsonl", "agreement": ev.extra_source,
                   "agreement_rows": len(ev.extra), "calibration": src.calibration_note},
        training={k: src.training[k] for k in ("data", "metrics", "max_length") if k in src.training} or None,
        versions=library_versions(),
    )
    for name in wanted:
        progress.say(f"building {name} ({VARIANTS[name].description}; int8 preset {src.preset})")
        m.variants[name] = _variants.build(name, ctx)
    m.default = _choose_defaults(m.variants)  # fp32 until validation says otherwise
    m.write(tmp)
    _write_jsonl(tmp / "eval.jsonl", ev.rows())
    return ctx, m


def _reference(cfg: ExportConfig, src: _Source, m: Manifest, progress: _Progress) -> ExportReference:
    """PyTorch fp32 on the eval set, and the gate (with thresholds tuned on PyTorch's scores); a
    reference no better than chance on the labels stops the export (`preflight.check_reference`)."""
    from . import preflight, validate

    ev = src.ev
    extra = f" + {len(ev.extra)} unlabeled" if ev.extra else ""
    progress.say(f"validating {len(m.variants)} variant(s) on {len(ev)} labeled{extra} held-out "
                 f"{'pairs' if ev.pair else 'texts'} vs PyTorch fp32 ({ev.task.name}, primary {ev.primary})")
    inputs = ev.inputs()
    texts = [x[0] for x in inputs] if ev.pair else inputs
    ref, torch_speed = validate.torch_reference(
        src.model, src.tokenizer, texts, src.max_length, m.inputs, pairs=[x[1] for x in inputs] if ev.pair else None,
        activation=src.activation)
    # Decision thresholds (multi-label) are tuned once, on PyTorch's scores; every variant is judged with them.
    thresholds = ev.task.calibrate(ref[:len(ev)], ev.y)
    gate = Gate(ev.task, cfg.budget, cfg.agreement, thresholds, ev.groups, ev.positive)
    m.task = m.task.replace(thresholds=thresholds)
    ref_metrics = validate.metrics(ref[:len(ev)], ev.y, gate)
    m.reference = {**ref_metrics, "n": len(ev), "agreement_n": len(ev.extra), "backend": "pytorch fp32",
                   "seq_per_s": round(torch_speed, 1), "unknown_token_rate": src.unknown_token_rate}
    if preflight.check_reference(ev, ref_metrics, cfg.accept_weak_reference):
        m.reference["weak_reference"] = True
    return ExportReference(inputs, ref, ev.y, ref_metrics, gate, src.threads)


def _validate(cfg: ExportConfig, ctx, m: Manifest, reference: ExportReference) -> None:
    """Every variant against the reference; then, if no plain int8 variant passes, the fallbacks
    (keeping the layers measured most sensitive in fp32, exporter/mixed.py)."""
    from . import validate

    validate.validate_variants(m, reference)
    fallbacks = _variants.fallback_names(cfg.device) if cfg.variants == "auto" else []
    if fallbacks and not any(v.get("eligible") for v in m.variants.values() if v["precision"] == "int8"):
        log.info("no int8 variant within %.2f points of %s and %g%% agreement; building %s",
                 cfg.budget, reference.gate.primary, cfg.agreement, ", ".join(fallbacks))
        for name in fallbacks:
            m.variants[name] = (_mixed.build(name, ctx, m, reference) if VARIANTS[name].searched
                                else _variants.build(name, ctx))
        m.write(ctx.folder)
        # All variants again, so the fallback is timed in the same interleaved rounds as the rest.
        validate.validate_variants(m, reference)


def _compress(cfg: ExportConfig, src: _Source, ctx, m: Manifest, reference: ExportReference, progress) -> None:
    """Students in the search (exporter/compress.py), then every variant timed again together."""
    from . import validate

    m.write(ctx.folder)  # the students' speed is predicted against the teacher's variants on disk
    m.extra["compression"] = _compress_mod.run(cfg, src, ctx, m, reference, progress)
    m.write(ctx.folder)
    validate.validate_variants(m, reference)


def _choose(cfg: ExportConfig, m: Manifest, tmp: Path, reference: ExportReference, progress: _Progress) -> None:
    """The default per provider, then the CPU default's window and token budget."""
    m.default = _choose_defaults(m.variants)
    if cfg.window_search and m.default.get("cpu"):
        progress.say(f"searching shorter windows than {m.max_length} tokens for the variants the gate accepted")
        chosen = _window.search(m, reference)
        if chosen:
            m.default["cpu"] = chosen["variant"]
            m.window = {"cpu": chosen}
    m.write(tmp)  # Classifier.load below reads the chosen window from it
    if m.default.get("cpu"):
        progress.say(f"choosing the token budget per batch for {m.default['cpu']} on the CPU")
        m.batching = {"cpu": choose_batch_tokens(tmp, m.default["cpu"], reference.inputs, reference.threads)}


class _Progress:
    """Numbered progress lines ("[2/6] fusing ...") on the bertfast logger."""

    def __init__(self, steps: int):
        self.steps, self.done = steps, 0

    def say(self, msg: str) -> None:
        self.done += 1
        log.info("[%d/%d] %s", self.done, self.steps, msg)


def _read_training(model_dir: Path) -> dict:
    """training.json of a model trained by bertfast ({} for other checkpoints)."""
    if not (model_dir / "training.json").exists():
        return {}
    try:
        return json.loads((model_dir / "training.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{model_dir}/training.json is unreadable ({e}); fix or delete it.") from None


def _task_block(ev, activation: str, min_agreement: float) -> dict:
    """The manifest's `task`: what the runtime needs (name, pair, activation, thresholds,
    truncation) and what the gate used (primary metric, min agreement, label mapping)."""
    block = {"name": ev.task.name, "pair": ev.pair, "activation": activation, "thresholds": None,
             "pair_truncation": "longest_first", "primary_metric": ev.primary, "min_agreement": min_agreement}
    if ev.label_mapping:
        block["label_mapping"] = ev.label_mapping
    if ev.positive is not None:
        block["positive_label"] = ev.id2label[ev.positive]
    return block


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """The eval rows next to the manifest, so its figures can be reproduced."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _weights_hash(model_dir: Path) -> str | None:
    for f in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / f).exists():
            return sha256_file(model_dir / f)
    return None


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    flags.add_arguments(p, ExportConfig)


def main(args: argparse.Namespace) -> int:
    out = export(flags.from_args(ExportConfig, args))
    print(format_table(load_manifest(out).raw))
    print(f"export written to {out}")
    return 0
