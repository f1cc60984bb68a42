"""PyTorch -> ONNX with dynamic batch and sequence axes.

bertfast drives `torch.onnx.export` itself (the TorchScript exporter, `dynamo=False`): graph
inputs are the ones the model's family takes (`families.py`) and its `forward` accepts, the
output is `logits`, and batch and sequence axes are dynamic. We load the model with *eager*
attention: with SDPA the exported attention subgraph does not match ORT's fusion patterns and
nothing fuses (see shared/MEASURED.md). On transformers 5 the export runs inside
`trace.traceable`, which restores the classic mask/attention graph ORT fuses. DistilBERT's
eager attention on transformers 4.x still needs one rewrite before ORT fuses it
(`rewrite.masked_fill_to_additive`, applied by `optimize.fuse`; a no-op on 5.x graphs).

optimum-onnx is not used here: it pins transformers<4.58, and it is only an optional peer in
`bertfast bench` (`pip install 'bertfast[optimum]'`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from ..compat import TRANSFORMERS_RANGE, require_transformers
from ..errors import BertfastError, ExportError, ModelError, require
from ..families import FAMILIES, family_of
from .trace import traceable

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
    from ..training.checkpoints import refuse_tf_only

    refuse_tf_only(model_dir)  # tf_model.h5 only: name the conversion, not "no weights"
    if not any((model_dir / f).exists() for f in WEIGHT_FILES) and not list(model_dir.glob("model-*.safetensors")):
        raise ModelError(f"{model_dir} has no weights ({' or '.join(WEIGHT_FILES)}).")
    return config


def load_torch_model(model_dir: Path, attn: str = "eager"):
    """The PyTorch classifier in eval mode; corrupt weights give a clear error."""
    transformers = require_transformers()
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), attn_implementation=attn
        )
    except Exception as e:  # safetensors/pickle raise many types on a corrupt file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"could not load the weights in {model_dir} ({type(e).__name__}: {msg}); the file may be corrupt or truncated.") from None
    return model.eval()


def export_inputs(model) -> list[str]:
    """Graph inputs: the family's (`families.py`) that the model's `forward` accepts, in its order.

    Signature order keeps `input_names` and the traced inputs aligned whichever way the
    exporter orders keyword arguments.
    """
    import inspect

    params = [n for n, p in inspect.signature(model.forward).parameters.items()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    wanted = family_of(model.config).inputs
    names = [n for n in params if n in wanted]
    if "input_ids" not in names or "attention_mask" not in names:
        raise ExportError(
            f"{type(model).__name__} (model_type {model.config.model_type!r}) does not take input_ids and "
            f"attention_mask (its forward takes {', '.join(params)}); bertfast exports text encoders that do."
        )
    return names


def _dummy_inputs(model, names: list[str]) -> dict:
    """Example tensors for tracing: batch 2, 16 tokens, the second row padded.

    Values do not shape the graph (tracing records ops), but padding keeps any "no padding,
    skip the mask" shortcut from being traced in; ids avoid the specials at the vocab's start.
    """
    import torch

    g = torch.Generator().manual_seed(0)
    vocab = int(getattr(model.config, "vocab_size", 0) or 100)
    batch, seq = 2, max(2, min(16, family_of(model.config).position_limit(model.config)))
    ids = torch.randint(min(5, vocab - 1), vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    mask[1, seq // 2:] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros(batch, seq, dtype=torch.int64)}
    return {n: values[n] for n in names}


def to_onnx(model, out_dir: Path, opset: int) -> Path:
    """Export `model` to `out_dir/model.onnx`; returns its path.

    Raises:
        ExportError: naming the model type and what to try, when the architecture cannot be traced.
    """
    import warnings

    require_transformers()
    torch = require("torch", "train")
    names = export_inputs(model)
    path = out_dir / "model.onnx"
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    axes["logits"] = {0: "batch_size"}
    try:
        with traceable(model), torch.no_grad(), warnings.catch_warnings(), _exporter_log_hidden() as log_file:
            # TracerWarnings (Python ints baked into the trace) are expected for these models;
            # the per-variant validation on real data is what proves the graph right.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (), str(path), kwargs=_dummy_inputs(model, names), input_names=names,
                output_names=["logits"], dynamic_axes=axes, opset_version=opset,
                do_constant_folding=True, dynamo=False,
            )
    except (BertfastError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # the tracer and the ONNX symbolics raise many types
        log.debug("torch.onnx.export output:\n%s", _read_tail(log_file))
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"could not trace {type(model).__name__} (model_type {model.config.model_type!r}) to ONNX "
            f"({type(e).__name__}: {first}). Try: another --opset (now {opset}); a model_type bertfast "
            f"knows ({', '.join(FAMILIES)}); or another transformers release in the supported range "
            f"({TRANSFORMERS_RANGE}, e.g. pip install 'transformers==4.57.*')."
        ) from None
    if not path.exists():
        raise ExportError(f"torch.onnx.export wrote no model.onnx in {out_dir}")
    outputs = _graph_outputs(path)
    if outputs != ["logits"]:
        raise ExportError(
            f"the exported {model.config.model_type} graph has outputs {outputs}, expected only logits; "
            "is this a sequence-classification checkpoint?"
        )
    return path


@contextlib.contextmanager
def _exporter_log_hidden():
    """Send file descriptor 1 to a temporary file for the block; yields that file.

    The TorchScript exporter's C++ logger is switched on by a bug in torch's own
    `setup_onnx_logging` (it tests the function `_jit_is_onnx_log_enabled`, always truthy), and on
    failure it writes the whole Torch IR graph to stdout, thousands of lines before our one-line
    error. It writes from C++, so only a descriptor-level redirect hides it; the text is kept for
    `--verbose` (logged at debug level).
    """
    import os
    import sys
    import tempfile

    with tempfile.TemporaryFile(mode="w+b") as f:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError):  # no usable stdout (embedded interpreters): leave it alone
            yield f
            return
        os.dup2(f.fileno(), 1)
        try:
            yield f
        finally:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 1)
            os.close(saved)


def _read_tail(f, limit: int = 20000) -> str:
    try:
        f.seek(0)
        return f.read().decode("utf-8", "replace")[-limit:]
    except (OSError, ValueError):
        return ""


def _graph_outputs(path: Path) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]


def graph_inputs(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in init]
