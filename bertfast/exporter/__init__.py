"""Export a fine-tuned classifier to ONNX, fuse it, quantize it, and prove every variant on real data.

`bertfast export MODEL_DIR --out exports/NAME` == `bertfast.export(ExportConfig(model_dir=..., out=...))`.
Each variant is validated on held-out labeled data (the validation split `bertfast train` saved,
or `--eval-data FILE`) against the PyTorch fp32 model, and the default variant the runtime loads
is the fastest one whose accuracy drop stays within `--max-accuracy-drop` points. The folder is
built in a temporary sibling and moved into place only when complete.
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

import numpy as np

from ..errors import BertfastError, DataError, ExportError, ModelError, require
from ..manifest import FORMAT_VERSION, MANIFEST_NAME, load_manifest
from ..utils import atomic_dir, check_output_dir, library_versions, sha256_file, usable_cpus, write_json

log = logging.getLogger(__name__)

# name -> (precision, devices, what it is)
VARIANTS = {
    "fp32": ("fp32", ["cpu", "cuda"], "fp32, ORT transformer fusions (Attention, SkipLayerNorm, EmbedLayerNorm, BiasGelu)"),
    "int8-dynamic": ("int8", ["cpu"], "int8 dynamic, per-tensor weights, fused graph (QAttention)"),
    "int8-dynamic-pc": ("int8", ["cpu"], "int8 dynamic, per-channel weights, fused graph (QAttention)"),
    "int8-dynamic-pc-fr": ("int8", ["cpu"], "int8 dynamic, per-channel, full 8-bit weight range (no reduce_range)"),
    "int8-static": ("int8", ["cpu"], "int8 static QDQ, activation ranges calibrated on training texts"),
    "int8-mixed": ("int8", ["cpu"], "int8 dynamic per-channel, first/last layer and head kept fp32"),
    "fp16": ("fp16", ["cuda"], "fp16 for CUDA, fused for GPU, LayerNorm/Softmax kept fp32"),
}
FILES = {"fp32": "model.onnx", "int8-dynamic": "model_int8_dynamic.onnx", "int8-dynamic-pc": "model_int8_dynamic_pc.onnx",
         "int8-dynamic-pc-fr": "model_int8_dynamic_pc_fr.onnx",
         "int8-static": "model_int8_static.onnx", "int8-mixed": "model_int8_mixed.onnx", "fp16": "model_fp16.onnx"}
AUTO_CPU = ["fp32", "int8-dynamic", "int8-dynamic-pc", "int8-static"]


@dataclass
class ExportConfig:
    """Everything `bertfast export` takes; each field is the CLI flag of the same name.

    Attributes:
        model_dir: fine-tuned model folder (from `bertfast train`, or any transformers
            sequence-classification checkpoint).
        out: export folder (default `exports/<model folder name>`).
        device: targets to build for: `cpu`, `cuda` or `all` (cuda adds the fp16 variant).
        variants: comma list of variants, or `auto` (fp32 + int8 dynamic/per-channel/static, plus
            int8-mixed when no plain int8 variant keeps the accuracy, plus fp16 for cuda).
        quantize: int8 preset: auto (from CPU flags), avx512_vnni, avx2, arm64.
        max_accuracy_drop: accuracy points a variant may lose vs PyTorch fp32 and still be default.
        eval_data: labeled file to validate on (default: the model's saved validation split).
        max_eval_samples: stratified cap on validation rows (keeps export time bounded).
        calibration_samples: training texts used to calibrate int8-static.
        max_length: tokens per window at inference (default: the training max length).
        opset: ONNX opset.
        threads: CPU threads for validation/speed (default: CPUs usable by this process).
        force: replace an existing export folder.
    """

    model_dir: str
    out: str | None = None
    device: str = "cpu"
    variants: str = "auto"
    quantize: str = "auto"
    max_accuracy_drop: float = 0.5
    eval_data: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_eval_samples: int | None = 2000
    calibration_samples: int = 128
    max_length: int | None = None
    opset: int = 17
    threads: int | None = None
    force: bool = False

    def __post_init__(self):
        if self.device not in ("cpu", "cuda", "all"):
            raise BertfastError(f"--device {self.device!r} is not valid; choose cpu, cuda or all.")
        if self.variants != "auto":
            names = [v.strip() for v in self.variants.split(",") if v.strip()]
            unknown = [v for v in names if v not in VARIANTS]
            if unknown or not names:
                raise BertfastError(f"--variants: unknown {', '.join(unknown) or '(empty)'}; choose from auto, {', '.join(VARIANTS)}.")
        if not 0 <= self.max_accuracy_drop <= 100:
            raise BertfastError(f"--max-accuracy-drop is in accuracy points (0-100), got {self.max_accuracy_drop}.")
        if self.max_eval_samples is not None and self.max_eval_samples < 2:
            raise BertfastError("--max-eval-samples must be at least 2.")
        if self.calibration_samples < 1:
            raise BertfastError("--calibration-samples must be at least 1.")
        if not 11 <= self.opset <= 21:
            raise BertfastError(f"--opset {self.opset} is outside 11-21.")
        if self.out is None:
            self.out = str(Path("exports") / Path(self.model_dir).resolve().name)

    def variant_list(self, preset: str = "avx512_vnni") -> list[str]:
        if self.variants != "auto":
            return [v.strip() for v in self.variants.split(",") if v.strip()]
        from .quantize import PRESETS

        names = AUTO_CPU if self.device in ("cpu", "all") else ["fp32"]
        if names is AUTO_CPU and PRESETS[preset]["reduce_range"]:
            # reduce_range (7-bit weights) avoids AVX2's int16 saturation but costs precision;
            # also build the full-range variant and let validation on real data decide.
            names = [*names[:3], "int8-dynamic-pc-fr", *names[3:]]
        return names + (["fp16"] if self.device in ("cuda", "all") else [])


def _eval_set(cfg: ExportConfig, model_dir: Path, label2id: dict[str, int]):
    """Held-out texts and label ids to validate on."""
    from ..data import read_labeled, subsample

    if cfg.eval_data:
        src = cfg.eval_data
    elif (model_dir / "splits" / "validation.jsonl").exists():
        src = str(model_dir / "splits" / "validation.jsonl")
    else:
        raise DataError(
            f"{model_dir} has no saved validation split (splits/validation.jsonl, written by `bertfast train`); "
            "pass labeled held-out data with --eval-data FILE: every variant is validated on real data."
        )
    data = subsample(read_labeled(src, cfg.text_column, cfg.label_column, split="validation"), cfg.max_eval_samples, 0)
    labels = data.labels
    unknown = sorted(set(labels) - set(label2id))
    # No guessing (e.g. mapping integer ids to names): a wrong mapping would silently corrupt
    # every accuracy figure in the manifest.
    if unknown:
        raise DataError(
            f"eval data {src} has label(s) {', '.join(map(repr, unknown[:5]))} that the model does not know; "
            f"its labels (id2label) are: {', '.join(label2id)}. Use data labeled with the same classes."
        )
    y = np.array([label2id[x] for x in labels])
    return src, data.texts, labels, y


def _calibration_batches(tokenizer, texts: list[str], inputs: list[str], max_length: int, n: int) -> list[dict]:
    rng = np.random.default_rng(0)
    pick = [texts[i] for i in rng.permutation(len(texts))[:n]]
    batches = []
    for i in range(0, len(pick), 8):
        # Fixed-length padding: the histogram calibrators stack activations across batches.
        enc = tokenizer(pick[i:i + 8], truncation=True, max_length=max_length, padding="max_length", return_tensors="np")
        batches.append({k: enc[k].astype(np.int64) if k in enc else np.zeros_like(enc["input_ids"], dtype=np.int64) for k in inputs})
    return batches


def export(cfg: ExportConfig) -> Path:
    """Build, validate and write the export folder; returns its path.

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
    check_output_dir(out, cfg.force)
    transformers = require("transformers", "train")
    from ..training import model_length_limit
    from . import optimize, quantize, validate

    training = {}
    if (model_dir / "training.json").exists():
        try:
            training = json.loads((model_dir / "training.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{model_dir}/training.json is unreadable ({e}); fix or delete it.") from None
    model = load_torch_model(model_dir)
    limit = model_length_limit(model.config)
    max_length = cfg.max_length or training.get("max_length") or min(limit, 512)
    if max_length > limit:
        raise BertfastError(f"--max-length {max_length} is over the model's limit of {limit} positions.")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    id2label = {int(k): v for k, v in model.config.id2label.items()}
    label2id = {v: k for k, v in id2label.items()}
    eval_src, texts, labels, y = _eval_set(cfg, model_dir, label2id)
    preset = quantize.check_preset(cfg.quantize)
    threads = cfg.threads or usable_cpus()
    torch = require("torch", "train")
    torch.set_num_threads(threads)
    wanted = cfg.variant_list(preset)
    n_layers = config.get("num_hidden_layers") or config.get("n_layers") or 0
    steps = len(wanted) + 3
    step = iter(range(1, 100))

    def say(msg):
        log.info("[%d/%d] %s", next(step), steps, msg)

    with atomic_dir(out) as tmp:
        scratch = tmp / ".work"
        scratch.mkdir()
        say(f"exporting {type(model).__name__} to ONNX (opset {cfg.opset}, dynamic batch/sequence axes)")
        raw = to_onnx(model, scratch, cfg.opset)
        inputs = graph_inputs(raw)
        tokenizer.model_max_length = max_length
        tokenizer.save_pretrained(str(tmp))
        model.config.save_pretrained(str(tmp))
        if not (tmp / "tokenizer.json").exists():
            raise ExportError("the tokenizer has no tokenizer.json (fast tokenizer) to ship with the export.")

        say("fusing the graph for ONNX Runtime (CPU)")
        optimize.fuse(raw, tmp / FILES["fp32"], config)
        variants: dict[str, dict] = {}

        def add(name, path):
            prec, devices, desc = VARIANTS[name]
            variants[name] = {"file": path.name, "precision": prec, "devices": devices, "description": desc,
                              "fused_ops": optimize.op_counts(path), "size_mb": round(path.stat().st_size / 2**20, 2)}

        add("fp32", tmp / FILES["fp32"])
        shaped = None
        calib_texts = texts
        if (model_dir / "splits" / "train.jsonl").exists():
            from ..data import read_labeled
            calib_texts = read_labeled(model_dir / "splits" / "train.jsonl").texts

        def build(name):
            nonlocal shaped
            dst = tmp / FILES[name]
            if name.startswith("int8") and shaped is None:
                shaped = quantize.with_shapes(tmp / FILES["fp32"], scratch / "shaped.onnx")
            if name == "int8-dynamic":
                quantize.dynamic(shaped, dst, preset, per_channel=False)
            elif name == "int8-dynamic-pc":
                quantize.dynamic(shaped, dst, preset, per_channel=True)
            elif name == "int8-dynamic-pc-fr":
                quantize.dynamic(shaped, dst, preset, per_channel=True, reduce_range=False)
            elif name == "int8-mixed":
                quantize.dynamic(shaped, dst, preset, per_channel=True, exclude=quantize.sensitive_nodes(shaped, n_layers))
            elif name == "int8-static":
                batches = _calibration_batches(tokenizer, calib_texts, inputs, max_length, cfg.calibration_samples)
                quantize.static(shaped, dst, preset, per_channel=True, calib_batches=batches)
            elif name == "fp16":
                optimize.to_fp16(raw, dst, config)
            add(name, dst)

        for name in wanted:
            if name != "fp32":
                say(f"building {name} ({VARIANTS[name][2]}; preset {preset})")
                build(name)

        manifest = {
            "format": "bertfast-export", "format_version": FORMAT_VERSION,
            "bertfast_version": library_versions(("bertfast",)).get("bertfast", "0"),
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"model_dir": str(model_dir.resolve()), "sha256": _weights_hash(model_dir),
                       "model_type": model.config.model_type, "architecture": type(model).__name__},
            "id2label": {str(k): v for k, v in id2label.items()},
            "max_length": int(max_length), "model_max_length": int(limit),
            "inputs": inputs, "output": "logits", "opset": cfg.opset,
            "tokenizer": {"file": "tokenizer.json", "pad_token_id": int(tokenizer.pad_token_id or 0),
                          "lowercase": bool(getattr(tokenizer, "do_lower_case", False))},
            "quantization_preset": preset,
            "variants": variants,
            "default": {"cpu": "fp32" if "fp32" in variants else None, "cuda": None},
            "max_accuracy_drop": cfg.max_accuracy_drop,
            "eval_data": {"source": eval_src, "rows": len(texts), "file": "eval.jsonl"},
            "training": {k: training[k] for k in ("data", "metrics", "max_length") if k in training} if training else None,
            "versions": library_versions(),
        }
        write_json(tmp / MANIFEST_NAME, manifest)
        with open(tmp / "eval.jsonl", "w", encoding="utf-8") as f:
            for t, lab in zip(texts, labels):
                f.write(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n")

        say(f"validating {len(variants)} variant(s) on {len(texts)} held-out texts vs PyTorch fp32")
        ref, torch_speed = validate.torch_reference(model, tokenizer, texts, max_length, inputs)
        ref_metrics = validate.metrics(ref, y)
        manifest["reference"] = {**ref_metrics, "n": len(texts), "backend": "pytorch fp32",
                                 "seq_per_s": round(torch_speed, 1)}
        _validate_variants(manifest, tmp, texts, ref, y, ref_metrics, threads)

        # No plain int8 within budget: try keeping the most sensitive layers in fp32.
        if (cfg.variants == "auto" and cfg.device != "cuda"
                and not any(v["eligible"] for n, v in variants.items() if n.startswith("int8"))):
            log.info("no int8 variant within %.2f points; building int8-mixed", cfg.max_accuracy_drop)
            build("int8-mixed")
            write_json(tmp / MANIFEST_NAME, manifest)
            # All variants again, so int8-mixed is timed in the same interleaved rounds as the rest.
            _validate_variants(manifest, tmp, texts, ref, y, ref_metrics, threads)

        manifest["default"] = _choose_defaults(variants)
        manifest["export_seconds"] = round(time.time() - t_start, 1)
        write_json(tmp / MANIFEST_NAME, manifest)
        shutil.rmtree(scratch)
        load_manifest(tmp)  # the folder we are about to publish must read back cleanly
    print(format_table(load_manifest(out).raw))
    return out


def _weights_hash(model_dir: Path) -> str | None:
    for f in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / f).exists():
            return sha256_file(model_dir / f)
    return None


def _validate_variants(manifest, folder, texts, ref, y, ref_metrics, threads) -> None:
    """Validate every variant on the eval texts, then time them side by side.

    Speed decides the default, so it is measured fairly: all variants stay loaded and are
    timed in interleaved rounds (median of rounds), so a burst of load on a shared machine
    hits every variant alike instead of deciding the ranking.
    """
    from ..runtime.classifier import Classifier
    from ..runtime.providers import available_providers
    from . import validate

    has_cuda = "CUDAExecutionProvider" in available_providers()
    budget = manifest["max_accuracy_drop"]
    loaded = {}
    try:
        for name, v in manifest["variants"].items():
            device = "cpu" if "cpu" in v["devices"] else "cuda"
            if device == "cuda" and not has_cuda:
                v.update(validation=None, speed=None, eligible=False,
                         reason="not validated: no CUDA provider where it was exported; re-export on a GPU machine")
                continue
            clf = loaded[name] = Classifier.load(folder, device=device, variant=name, threads=threads)
            v["validation"] = validate.compare(clf.predict_proba(texts), ref, y, ref_metrics)
            drop = v["validation"]["accuracy_drop_points"]
            v["eligible"] = drop <= budget
            v["reason"] = (f"accuracy drop {drop:.2f} <= {budget} points" if v["eligible"]
                           else f"accuracy drop {drop:.2f} > {budget} points budget")
        for name, sp in validate.interleaved_speed(loaded, texts).items():
            manifest["variants"][name]["speed"] = sp
    finally:
        for clf in loaded.values():
            clf.close()
    for name in loaded:
        v = manifest["variants"][name]
        log.info("  %-19s acc %s  agree %.4f  max|dp| %.4f  %.1f seq/s  %s", name,
                 "n/a" if v["validation"]["accuracy"] is None else f"{v['validation']['accuracy']:.4f}",
                 v["validation"]["label_agreement"], v["validation"]["max_abs_prob_diff"],
                 v["speed"]["seq_per_s"], "ok" if v["eligible"] else "REJECTED")


def _choose_defaults(variants: dict) -> dict:
    """Fastest eligible variant per device (near-ties go to the most faithful one); fp32 is
    the fallback when nothing else qualifies."""
    out = {}
    for device in ("cpu", "cuda"):
        cands = [(n, v) for n, v in variants.items() if device in v["devices"]]
        ok = [(n, v) for n, v in cands if v.get("eligible") and v.get("speed") and v["speed"]["device"] == device]
        if ok:
            # Variants within 3% of the fastest are a tie on a short measurement: among them
            # take the one that agrees most with PyTorch (then the fastest).
            top = max(v["speed"]["seq_per_s"] for _, v in ok)
            tied = [(n, v) for n, v in ok if v["speed"]["seq_per_s"] >= 0.97 * top]
            out[device] = max(tied, key=lambda nv: (nv[1]["validation"]["label_agreement"],
                                                    -nv[1]["validation"]["accuracy_drop_points"],
                                                    nv[1]["speed"]["seq_per_s"]))[0]
        elif "fp32" in variants and device in variants["fp32"]["devices"]:
            out[device] = "fp32"
        else:
            out[device] = None
    return out


def format_table(m: dict) -> str:
    """The validation table printed after export (and stored figures in the manifest)."""
    ref = m.get("reference") or {}
    rows = [f"export {m['source']['architecture']} -> {len(m['variants'])} variant(s); validated on "
            f"{m['eval_data']['rows']} held-out texts ({m['eval_data']['source']})",
            f"reference PyTorch fp32: accuracy {_pct(ref.get('accuracy'))}, macro-F1 {_pct(ref.get('macro_f1'))}, "
            f"{ref.get('seq_per_s', '?')} seq/s",
            f"{'variant':<19} {'accuracy':>9} {'drop':>6} {'agree':>8} {'max|dp|':>8} {'seq/s':>8} {'MB':>6}  verdict"]
    for n, v in m["variants"].items():
        val, sp = v.get("validation") or {}, v.get("speed") or {}
        mark = " <- default " + "/".join(d for d, x in m["default"].items() if x == n) if n in m["default"].values() else ""
        rows.append(f"{n:<19} {_pct(val.get('accuracy')):>9} {val.get('accuracy_drop_points', float('nan')):>6.2f} "
                    f"{_pct(val.get('label_agreement')):>8} {val.get('max_abs_prob_diff', float('nan')):>8.4f} "
                    f"{sp.get('seq_per_s', float('nan')):>8.1f} {v['size_mb']:>6.1f}  {v.get('reason', '')}{mark}")
    return "\n".join(rows)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


# ----------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="fine-tuned model folder (from `bertfast train` or any sequence-classification checkpoint)")
    p.add_argument("--out", default=None, help="export folder (default: exports/<model folder name>)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "all"], help="targets: cuda adds the fp16 variant")
    p.add_argument("--variants", default="auto", help=f"comma list from: {', '.join(VARIANTS)}; or auto")
    p.add_argument("--quantize", default="auto", help="int8 preset: auto, avx512_vnni, avx2, arm64")
    p.add_argument("--max-accuracy-drop", type=float, default=0.5, help="accuracy points a default variant may lose vs PyTorch fp32")
    p.add_argument("--eval-data", default=None, help="labeled held-out file to validate on (default: the model's splits/validation.jsonl)")
    p.add_argument("--text-column", default="text", help="text column of --eval-data")
    p.add_argument("--label-column", default="label", help="label column of --eval-data")
    p.add_argument("--max-eval-samples", type=int, default=2000, help="stratified cap on validation rows")
    p.add_argument("--calibration-samples", type=int, default=128, help="training texts to calibrate int8-static")
    p.add_argument("--max-length", type=int, default=None, help="tokens per window at inference (default: training max length)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for validation (default: CPUs usable)")
    p.add_argument("--force", action="store_true", help="replace an existing export folder")


def main(args: argparse.Namespace) -> int:
    names = ExportConfig.__dataclass_fields__.keys()
    out = export(ExportConfig(**{k: v for k, v in vars(args).items() if k in names}))
    print(f"export written to {out}")
    return 0
