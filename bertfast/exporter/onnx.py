"""PyTorch -> ONNX with dynamic batch and sequence axes.

We use optimum-onnx's exporter (`onnx_export_from_model`): it knows the input/output specs and
dynamic axes of every encoder architecture transformers ships, so `token_type_ids` is present
exactly when the model takes it, and its TorchScript path produces graphs that ONNX Runtime's
transformer optimizer fuses fully. We load the model with *eager* attention first: with SDPA
the exported attention subgraph does not match ORT's fusion patterns and nothing fuses
(seen on this hardware, see shared/MEASURED.md). DistilBERT's eager attention still needs one
rewrite before ORT fuses it (`rewrite.masked_fill_to_additive`, applied by `optimize.fuse`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import ExportError, ModelError, require

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def check_model_dir(model_dir: Path) -> dict:
    """Return config.json of a sequence-classification checkpoint, or say what is wrong."""
    if not model_dir.exists():
        raise ModelError(f"model folder {model_dir} does not exist; pass the folder written by `bertfast train`.")
    if not model_dir.is_dir() or not (model_dir / "config.json").is_file():
        raise ModelError(
            f"{model_dir} is not a model folder (no config.json); pass the folder written by `bertfast train` "
            "or any transformers sequence-classification checkpoint."
        )
    if (model_dir / "bertfast.json").exists():
        raise ModelError(f"{model_dir} is already a bertfast export; export the trained model folder it came from.")
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"{model_dir}/config.json is unreadable ({e}).") from None
    archs = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(
            f"{model_dir} holds a {', '.join(archs) or config.get('model_type', 'unknown')} checkpoint, not a "
            "sequence classifier; fine-tune it first with `bertfast train`."
        )
    if not any((model_dir / f).exists() for f in WEIGHT_FILES) and not list(model_dir.glob("model-*.safetensors")):
        raise ModelError(f"{model_dir} has no weights ({' or '.join(WEIGHT_FILES)}).")
    return config


def load_torch_model(model_dir: Path, attn: str = "eager"):
    """The PyTorch classifier in eval mode; corrupt weights give a clear error."""
    transformers = require("transformers", "train")
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), attn_implementation=attn
        )
    except Exception as e:  # safetensors/pickle raise many types on a corrupt file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"could not load the weights in {model_dir} ({type(e).__name__}: {msg}); the file may be corrupt or truncated.") from None
    return model.eval()


def to_onnx(model, out_dir: Path, opset: int) -> Path:
    """Export `model` to `out_dir/model.onnx`; returns its path."""
    require("optimum.exporters.onnx", "train", "optimum-onnx")
    from optimum.exporters.onnx import onnx_export_from_model

    try:
        onnx_export_from_model(
            model, out_dir, opset=opset, task="text-classification",
            # We validate on real data ourselves (per variant, against PyTorch), not on random ids.
            do_validation=False,
        )
    except (KeyError, ValueError, NotImplementedError) as e:
        arch = type(model).__name__
        raise ExportError(
            f"the ONNX exporter cannot handle {arch} (model_type {model.config.model_type!r}): "
            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        ) from None
    path = out_dir / "model.onnx"
    if not path.exists():
        raise ExportError(f"the exporter wrote no model.onnx in {out_dir}")
    return path


def graph_inputs(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in init]
