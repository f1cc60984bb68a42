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
from dataclasses import dataclass
from pathlib import Path

from ..checks import check_float, check_int
from ..errors import BertfastError, ExportError, ModelError, require
from ..families import family_of
from ..manifest import Manifest, load_manifest
from ..tasks import TASK_NAMES, score_activation, tune_thresholds
from ..tasks import get as get_task
from ..utils import atomic_dir, check_output_dir, library_versions, sha256_file, usable_cpus
from . import evalset as _evalset
from . import mixed as _mixed
from . import variants as _variants
from . import window as _window
from .budget import choose_batch_tokens
from .evalset import parse_label_names
from .report import choose_defaults as _choose_defaults
from .report import format_table
from .validate import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, Gate
from .variants import DEVICE_CHOICES, VARIANTS

__all__ = ["ExportConfig", "export", "format_table", "VARIANTS"]

log = logging.getLogger(__name__)


@dataclass
class ExportConfig:
    """Everything `bertfast export` takes; each field is the CLI flag of the same name.

    Attributes:
        model_dir: fine-tuned model folder (from `bertfast train`, or any transformers
            sequence-classification checkpoint).
        out: export folder (default `exports/<model folder name>`).
        device: provider to build for: `cpu`, a GPU provider (`cuda`, `tensorrt`: adds fp16) or `all`.
        variants: comma list of variants, or `auto` (per `variants.VARIANTS`: fp32 + int8
            dynamic/per-channel/static, plus int8-mixed when no plain int8 variant keeps the
            accuracy, plus fp16 for GPU providers).
        quantize: int8 preset: auto (from CPU flags), avx512_vnni, avx2, arm64.
        max_metric_drop: points (metric x 100) of the task's primary metric (accuracy, micro_f1,
            pearson; ndcg@10 for reranking) a variant may lose vs PyTorch fp32 and still be a
            default (None: 0.5).
        max_accuracy_drop: the older name of max_metric_drop (both given: they must agree).
        min_agreement: percent of inputs on which a variant must decide as PyTorch fp32 does
            (same top label / label set / close score; reranking: same top document per query).
            None: 99.5.
        eval_data: labeled file to validate on (default: the model's saved validation split).
        text_pair_column: second-text column of --eval-data (pair models).
        label_separator: splits string labels of --eval-data into multi-label lists.
        task: single_label, multi_label or regression (default: the checkpoint's, else inferred
            from the labels).
        label_names: comma list naming the classes in id order; replaces id2label in the export
            (then integer data labels are class ids too).
        max_eval_samples: stratified cap on validation rows (keeps export time bounded).
        calibration_samples: training texts used to calibrate int8-static.
        max_length: the user's max length: PyTorch's reference and every variant are validated
            at it (default: the training max length).
        window_search: also validate shorter windows (3/4, 1/2, 1/4 of max_length; start or
            head + tail) of the variants the gate accepts, and make the fastest accepted
            (variant, window) the CPU default (`exporter/window.py`).
        opset: ONNX opset.
        threads: CPU threads for validation/speed (default: CPUs usable by this process).
        force: replace an existing export folder.
    """

    model_dir: str
    out: str | None = None
    device: str = "cpu"
    variants: str = "auto"
    quantize: str = "auto"
    max_metric_drop: float | None = None
    max_accuracy_drop: float | None = None
    min_agreement: float | None = None
    eval_data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    label_separator: str | None = None
    task: str | None = None
    label_names: str | None = None
    max_eval_samples: int | None = 2000
    calibration_samples: int = 128
    max_length: int | None = None
    window_search: bool = True
    opset: int = 17
    threads: int | None = None
    force: bool = False

    def __post_init__(self):
        _variants.check_device(self.device)
        if self.variants != "auto":
            _variants.parse_names(self.variants)
        # NaN, inf, negatives and wrong types (Python API) all stop here, naming the flag.
        check_float("--max-metric-drop", self.max_metric_drop, 0, 100, optional=True, example="0.5 (points)")
        check_float("--max-accuracy-drop", self.max_accuracy_drop, 0, 100, optional=True, example="0.5 (accuracy points)")
        if None not in (self.max_metric_drop, self.max_accuracy_drop) and self.max_metric_drop != self.max_accuracy_drop:
            raise BertfastError(
                f"--max-metric-drop {self.max_metric_drop} and --max-accuracy-drop {self.max_accuracy_drop} differ; "
                "--max-accuracy-drop is the older name of --max-metric-drop: pass one of them."
            )
        check_float("--min-agreement", self.min_agreement, 0, 100, optional=True, example="99.5 (percent)")
        if self.task is not None:
            get_task(self.task)
        for flag, value in (("--text-pair-column", self.text_pair_column), ("--label-separator", self.label_separator)):
            if value is not None and (not isinstance(value, str) or not value):
                raise BertfastError(f"{flag} must be a non-empty string; got {value!r}.")
        parse_label_names(self.label_names)
        check_int("--max-eval-samples", self.max_eval_samples, 2, optional=True)
        check_int("--calibration-samples", self.calibration_samples, 1)
        check_int("--max-length", self.max_length, 8, optional=True)
        check_int("--opset", self.opset, 11, 21)
        if not isinstance(self.window_search, bool):
            raise BertfastError(f"--window-search must be True or False; got {self.window_search!r}.")
        check_int("--threads", self.threads, 1, optional=True)
        if self.out is None:
            self.out = str(Path("exports") / Path(self.model_dir).resolve().name)

    @property
    def budget(self) -> float:
        """The gate's budget in points of the primary metric."""
        given = self.max_metric_drop if self.max_metric_drop is not None else self.max_accuracy_drop
        return DEFAULT_MAX_DROP if given is None else float(given)

    @property
    def agreement(self) -> float:
        """The gate's minimum agreement with PyTorch fp32, percent."""
        return DEFAULT_MIN_AGREEMENT if self.min_agreement is None else float(self.min_agreement)

    def variant_list(self, preset: str = "avx512_vnni") -> list[str]:
        """The variants to build up front (fp32 first) for the resolved int8 `preset`."""
        names = _variants.auto_names(self.device, preset) if self.variants == "auto" else _variants.parse_names(self.variants)
        return ["fp32", *[n for n in names if n != "fp32"]]


def export(cfg: ExportConfig) -> Path:
    """Build, validate and write the export folder; returns its path.

    A variant other than fp32 that fails to build is recorded in the manifest with its reason
    and the export goes on; it fails only when fp32 (which every variant derives from) fails.

    Raises:
        BertfastError (and subclasses) with a message that says what to fix. On any failure the
        previous export at `cfg.out` (if any) is left as it was.
    """
    from .onnx import check_model_dir, graph_inputs, load_torch_model, to_onnx

    t_start = time.time()
    model_dir = Path(cfg.model_dir)
    out = Path(cfg.out)
    config = check_model_dir(model_dir)
    mo, oo = model_dir.resolve(), out.resolve()
    if mo == oo or mo in oo.parents or oo in mo.parents:
        raise BertfastError(
            f"--out {out} overlaps the model folder {model_dir}: the export would replace the trained model. "
            "Choose another --out (e.g. exports/<name>)."
        )
    # An export folder holding the model or the eval data would be replaced by the export.
    check_output_dir(out, cfg.force, inputs=(cfg.model_dir, cfg.eval_data))
    transformers = require("transformers", "train")
    from ..checkpoints import model_length_limit
    from . import quantize, validate

    family = family_of(config)
    training = _read_training(model_dir)
    model = load_torch_model(model_dir)
    limit = model_length_limit(model.config)
    max_length = cfg.max_length or training.get("max_length") or min(limit, 512)
    if max_length > limit:
        raise BertfastError(f"--max-length {max_length} is over the model's limit of {limit} positions.")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    ev = _evalset.load(cfg, model_dir, model.config, training)
    if ev.id2label != {int(k): v for k, v in model.config.id2label.items()}:  # --label-names
        model.config.id2label, model.config.label2id = dict(ev.id2label), {v: k for k, v in ev.id2label.items()}
    activation = score_activation(model.config, ev.task)
    if model.config.problem_type is None and activation == ev.task.activation:
        # The exported config.json says what was validated: transformers' pipelines pick the
        # activation from it (sigmoid for one output unless problem_type says regression).
        model.config.problem_type = ev.task.problem_type
    preset = quantize.check_preset(cfg.quantize)
    threads = cfg.threads or usable_cpus()
    require("torch", "train").set_num_threads(threads)
    wanted = cfg.variant_list(preset)
    progress = _Progress(len(wanted) + 3 + bool(cfg.window_search))
    inputs_ev = ev.inputs()

    with atomic_dir(out) as tmp:
        scratch = tmp / ".work"
        scratch.mkdir()
        progress.say(f"exporting {type(model).__name__} to ONNX (opset {cfg.opset}, dynamic batch/sequence axes)")
        raw = to_onnx(model, scratch, cfg.opset)
        inputs = family.check_inputs(graph_inputs(raw))
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(str(tmp))
        model.config.save_pretrained(str(tmp))
        if not (tmp / "tokenizer.json").exists():
            raise ExportError("the tokenizer has no tokenizer.json (fast tokenizer) to ship with the export.")
        ctx = _variants.BuildContext(
            folder=tmp, scratch=scratch, raw=raw, config=config, preset=preset, tokenizer=tokenizer,
            calibration_texts=_calibration_inputs(model_dir, ev.pair) or inputs_ev, inputs=inputs,
            max_length=max_length, calibration_samples=cfg.calibration_samples,
        )
        m = Manifest(
            bertfast_version=library_versions(("bertfast",)).get("bertfast", "0"),
            created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            # As the user gave it, never resolved: committed results must not carry this machine's paths.
            source={"model_dir": str(cfg.model_dir), "sha256": _weights_hash(model_dir),
                    "model_type": model.config.model_type, "family": family.model_type,
                    "architecture": type(model).__name__},
            id2label=dict(ev.id2label), max_length=int(max_length), model_max_length=int(limit), inputs=inputs,
            task=_task_block(ev, activation, cfg.agreement),
            opset=cfg.opset, quantization_preset=preset, max_accuracy_drop=cfg.budget,
            tokenizer={"file": "tokenizer.json", "pad_token_id": int(tokenizer.pad_token_id or 0),
                       "lowercase": bool(getattr(tokenizer, "do_lower_case", False))},
            eval_data={"source": ev.source, "rows": len(ev), "file": "eval.jsonl"},
            training={k: training[k] for k in ("data", "metrics", "max_length") if k in training} or None,
            versions=library_versions(),
        )
        for name in wanted:
            progress.say(f"building {name} ({VARIANTS[name].description}; int8 preset {preset})")
            m.variants[name] = _variants.build(name, ctx)
        m.default = _choose_defaults(m.variants)  # fp32 until validation says otherwise
        m.write(tmp)
        _write_jsonl(tmp / "eval.jsonl", ev.rows())

        progress.say(f"validating {len(m.variants)} variant(s) on {len(ev)} held-out "
                     f"{'pairs' if ev.pair else 'texts'} vs PyTorch fp32 ({ev.task.name}, primary {ev.primary})")
        ref, torch_speed = validate.torch_reference(
            model, tokenizer, ev.data.texts, max_length, inputs, pairs=ev.data.pairs, activation=activation)
        # Multi-label thresholds are tuned once, on PyTorch's scores; every variant is judged with them.
        thresholds = tune_thresholds(ref, ev.y) if ev.task.name == "multi_label" else None
        gate = Gate(ev.task, cfg.budget, cfg.agreement, thresholds, ev.groups)
        m.task["thresholds"] = thresholds
        ref_metrics = validate.metrics(ref, ev.y, gate)
        m.reference = {**ref_metrics, "n": len(ev), "backend": "pytorch fp32", "seq_per_s": round(torch_speed, 1)}
        validate.validate_variants(m, inputs_ev, ref, ev.y, ref_metrics, threads, gate)

        # No plain int8 within the gate: try the fallbacks (keeping the layers measured most
        # sensitive in fp32, exporter/mixed.py).
        fallbacks = _variants.fallback_names(cfg.device) if cfg.variants == "auto" else []
        if fallbacks and not any(v.get("eligible") for n, v in m.variants.items() if v["precision"] == "int8"):
            log.info("no int8 variant within %.2f points of %s and %g%% agreement; building %s",
                     cfg.budget, ev.primary, cfg.agreement, ", ".join(fallbacks))
            for name in fallbacks:
                m.variants[name] = (_mixed.build(name, ctx, m, inputs_ev, ref, ev.y, ref_metrics, threads, gate)
                                    if VARIANTS[name].searched else _variants.build(name, ctx))
            m.write(tmp)
            # All variants again, so the fallback is timed in the same interleaved rounds as the rest.
            validate.validate_variants(m, inputs_ev, ref, ev.y, ref_metrics, threads, gate)

        m.default = _choose_defaults(m.variants)
        if cfg.window_search and m.default.get("cpu"):
            progress.say(f"searching shorter windows than {max_length} tokens for the variants the gate accepted")
            chosen = _window.search(m, inputs_ev, ref, ev.y, ref_metrics, threads, gate)
            if chosen:
                m.default["cpu"] = chosen["variant"]
                m.window = {"cpu": chosen}
        m.write(tmp)  # Classifier.load below reads the chosen window from it
        if m.default.get("cpu"):
            progress.say(f"choosing the token budget per batch for {m.default['cpu']} on the CPU")
            m.batching = {"cpu": choose_batch_tokens(tmp, m.default["cpu"], inputs_ev, threads)}
        m.export_seconds = round(time.time() - t_start, 1)
        m.write(tmp)
        shutil.rmtree(scratch)
        load_manifest(tmp)  # the folder we are about to publish must read back cleanly
    print(format_table(load_manifest(out).raw))
    return out


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
    return block


def _calibration_inputs(model_dir: Path, pair: bool) -> list:
    """Training inputs (texts, or pairs for a pair model) to calibrate int8-static; [] if none saved."""
    from ..data import read_labeled

    path = model_dir / "splits" / "train.jsonl"
    if not path.exists():
        return []
    has_pair = _evalset.SAVED_PAIR_COLUMN in _evalset.first_row(path)
    if pair != has_pair:
        return []
    return read_labeled(path, label_column=None, text_pair_column=_evalset.SAVED_PAIR_COLUMN if pair else None).inputs()


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
    p.add_argument("model_dir", help="fine-tuned model folder (from `bertfast train` or any sequence-classification checkpoint)")
    p.add_argument("--out", default=None, help="export folder (default: exports/<model folder name>)")
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES,
                   help="provider(s) to build for; a GPU provider (cuda, tensorrt) adds the fp16 variant")
    p.add_argument("--variants", default="auto", help=f"comma list from: {', '.join(VARIANTS)}; or auto")
    p.add_argument("--quantize", default="auto", help="int8 preset: auto, avx512_vnni, avx2, arm64")
    p.add_argument("--max-metric-drop", type=float, default=None,
                   help="points of the task's primary metric (accuracy, micro_f1, pearson; ndcg@10 for reranking) "
                        f"a default variant may lose vs PyTorch fp32 (default {DEFAULT_MAX_DROP})")
    p.add_argument("--max-accuracy-drop", type=float, default=None, help="older name of --max-metric-drop")
    p.add_argument("--min-agreement", type=float, default=None,
                   help="percent of inputs on which a default variant must decide as PyTorch fp32 does "
                        f"(reranking: same top document per query; default {DEFAULT_MIN_AGREEMENT})")
    p.add_argument("--eval-data", default=None, help="labeled held-out file to validate on (default: the model's splits/validation.jsonl)")
    p.add_argument("--text-column", default="text", help="text column of --eval-data")
    p.add_argument("--text-pair-column", default=None, help="second-text column of --eval-data (pair models)")
    p.add_argument("--label-column", default="label", help="label column of --eval-data")
    p.add_argument("--label-separator", default=None, help="split string labels of --eval-data into multi-label lists")
    p.add_argument("--task", default=None, choices=TASK_NAMES,
                   help="task to validate (default: the checkpoint's problem_type, else inferred from the labels)")
    p.add_argument("--label-names", default=None,
                   help="comma list naming the classes in id order (e.g. neg,pos); replaces id2label in the export")
    p.add_argument("--max-eval-samples", type=int, default=2000, help="stratified cap on validation rows")
    p.add_argument("--calibration-samples", type=int, default=128, help="training texts to calibrate int8-static")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per text the variants are validated at (default: training max length)")
    p.add_argument("--window-search", action=argparse.BooleanOptionalAction, default=True,
                   help="also try shorter windows (3/4, 1/2, 1/4; start or head+tail) of the accepted variants "
                        "and default to the fastest the gate accepts")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for validation (default: CPUs usable)")
    p.add_argument("--force", action="store_true", help="replace an existing export folder")


def main(args: argparse.Namespace) -> int:
    names = ExportConfig.__dataclass_fields__.keys()
    out = export(ExportConfig(**{k: v for k, v in vars(args).items() if k in names}))
    print(f"export written to {out}")
    return 0
