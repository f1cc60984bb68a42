"""bertfast's own torch.onnx.export step (exporter/onnx.py, exporter/trace.py), on whichever
transformers is installed (CI runs this file on 5.x and on 4.57): graph inputs and dynamic axes,
PyTorch parity, the tracing patch undone afterwards, one clear error for an architecture that
cannot be traced, the transformers version check, and interop with Optimum when installed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertfast.errors import ExportError, MissingDependencyError


@pytest.fixture
def bert(tiny_model):
    from bertfast.exporter.onnx import load_torch_model

    return load_torch_model(tiny_model)


def _ort_logits(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], feeds)[0]


def _torch_logits(model, feeds):
    import torch

    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()


def _feeds(names, batch, seq, vocab=60, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0  # padding in the first row
    values = {"input_ids": rng.integers(5, vocab, (batch, seq)), "attention_mask": mask,
              "token_type_ids": np.zeros((batch, seq), np.int64)}
    return {n: values[n].astype(np.int64) for n in names}


def test_graph_has_family_inputs_dynamic_axes_and_logits(bert, tmp_path):
    import onnx

    from bertfast.exporter.onnx import graph_inputs, to_onnx

    path = to_onnx(bert, tmp_path, 17)
    assert graph_inputs(path) == ["input_ids", "attention_mask", "token_type_ids"]
    g = onnx.load(str(path)).graph
    assert [o.name for o in g.output] == ["logits"]
    for i in g.input:
        dims = [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        assert dims == ["batch_size", "sequence_length"], (i.name, dims)
    # Shapes other than the tracing example's (2 x 16), padding included, match PyTorch.
    for batch, seq in ((1, 5), (3, 40)):
        feeds = _feeds(graph_inputs(path), batch, seq)
        np.testing.assert_allclose(_ort_logits(path, feeds), _torch_logits(bert, feeds), atol=1e-5)


def test_inputs_are_the_familys_that_forward_accepts(tmp_path):
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    from bertfast.exporter.onnx import export_inputs

    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=60, dim=32, n_layers=1, n_heads=2,
                                                                  hidden_dim=64, max_position_embeddings=64))
    assert export_inputs(distil) == ["input_ids", "attention_mask"]
    # RoBERTa's forward takes token_type_ids, but its family (one segment) does not use them.
    roberta = RobertaForSequenceClassification(RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1,
                                                             num_attention_heads=2, intermediate_size=64,
                                                             max_position_embeddings=66, pad_token_id=0))
    assert export_inputs(roberta) == ["input_ids", "attention_mask"]


def test_tracing_patch_is_undone(bert, tmp_path):
    """After an export the model, transformers' mask builders and its attention registry are as before."""
    import sys

    import transformers

    from bertfast.exporter import trace
    from bertfast.exporter.onnx import to_onnx

    before = {m.__name__: vars(m)[trace._MASK_FN] for m in trace._mask_modules(bert)}
    attn = bert.config._attn_implementation
    to_onnx(bert, tmp_path, 17)
    assert bert.config._attn_implementation == attn == "eager"
    for name, fn in before.items():
        assert vars(sys.modules[name])[trace._MASK_FN] is fn, name
    interface = getattr(transformers, "AttentionInterface", None)
    if interface is not None:
        assert trace._ATTN_NAME not in interface._global_mapping
    if hasattr(transformers, "masking_utils") and before:  # transformers 5: the patch had work to do
        assert "transformers.models.bert.modeling_bert" in before


def _untraceable(model):
    """`model` with a classifier head built on an op that has no ONNX export (an SVD): stands in
    for an architecture the TorchScript exporter cannot handle."""
    import torch

    class Head(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x) + torch.linalg.svdvals(x[:, None, :])

    model.classifier = Head(model.classifier)
    return model


def test_untraceable_architecture_is_one_export_error(bert, tmp_path):
    from bertfast.exporter.onnx import to_onnx

    with pytest.raises(ExportError) as e:
        to_onnx(_untraceable(bert), tmp_path, 17)
    msg = str(e.value)
    assert "BertForSequenceClassification" in msg and "model_type 'bert'" in msg
    assert "Try:" in msg and "transformers==4.57" in msg and "\n" not in msg


def test_untraceable_architecture_from_the_cli(tiny_model, tmp_path, monkeypatch, capfd):
    """`bertfast export` reports it on one line (exit 2), no traceback."""
    from bertfast import cli
    from bertfast.exporter import onnx as onnx_mod

    real = onnx_mod.load_torch_model
    monkeypatch.setattr(onnx_mod, "load_torch_model", lambda d, attn="eager": _untraceable(real(d, attn)))
    ev = tmp_path / "ev.jsonl"
    ev.write_text("".join(json.dumps({"text": f"the match {i}", "label": "sport"}) + "\n" for i in range(4)))
    code = cli.main(["export", str(tiny_model), "--out", str(tmp_path / "e"), "--eval-data", str(ev)])
    out, err = capfd.readouterr()  # fd level: the exporter's C++ log bypasses sys.stdout
    # The last stderr line (transformers 5 draws a weight-loading progress bar before it).
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: could not trace BertForSequenceClassification"), err
    assert "Traceback" not in err and "graph(" not in out + err and not (tmp_path / "e").exists()


@pytest.mark.parametrize("version, ok", [
    ("4.47.1", False), ("4.48.0", True), ("4.57.6", True), ("5.0.0.dev0", True), ("5.24.0", True), ("6.0.0", False),
])
def test_transformers_version_check(monkeypatch, version, ok):
    import transformers

    from bertfast.compat import TRANSFORMERS_RANGE, require_transformers

    monkeypatch.setattr(transformers, "__version__", version)
    if ok:
        assert require_transformers() is transformers
    else:
        with pytest.raises(MissingDependencyError) as e:
            require_transformers()
        assert version in str(e.value) and TRANSFORMERS_RANGE in str(e.value) and "pip install" in str(e.value)


def test_export_and_train_paths_check_the_version(monkeypatch, tiny_model):
    import transformers

    from bertfast.exporter.onnx import load_torch_model
    from bertfast.training.checkpoints import load_config_and_tokenizer

    monkeypatch.setattr(transformers, "__version__", "6.1.0")
    for call in (lambda: load_torch_model(tiny_model), lambda: load_config_and_tokenizer(str(tiny_model))):
        with pytest.raises(MissingDependencyError, match=r">=4\.48,<6"):
            call()


def test_optimum_loads_the_export(bert, tiny_model, tmp_path):
    """Optimum (the `bench` peer, `bertfast[optimum]`) runs bertfast's raw graph unchanged."""
    pytest.importorskip("optimum.onnxruntime")
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer

    from bertfast.exporter.onnx import to_onnx

    folder = tmp_path / "onnx"
    folder.mkdir()
    to_onnx(bert, folder, 17)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (tiny_model / f).exists():
            shutil.copy(tiny_model / f, folder / f)
    ort_model = ORTModelForSequenceClassification.from_pretrained(folder, file_name="model.onnx")
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(["the match was won", "a new phone and a new chip for the data network"], padding=True, return_tensors="np")
    feeds = {k: v.astype(np.int64) for k, v in enc.items()}
    np.testing.assert_allclose(ort_model(**feeds).logits, _torch_logits(bert, feeds), atol=1e-5)
