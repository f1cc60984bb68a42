"""The model-family table, and fusion checked per family on tiny random 2-layer models.

The fusion test runs on whichever transformers is installed: CI runs it on 5.x (README's
install) and on 4.57 (.ci/run's second environment); both must fuse the same.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from bertfast.families import FAMILIES, GENERIC, family_of

N_LAYERS = 2
SMALL = dict(hidden_size=32, num_hidden_layers=N_LAYERS, num_attention_heads=2, intermediate_size=64)
# Each family's tiny config; max positions below the vocab size (ORT's embedding fusion tells the
# two tables apart by size). RoBERTa-style models get the BERT vocab's pad id (0).
CONFIGS = {
    "bert": dict(SMALL, max_position_embeddings=64),
    "roberta": dict(SMALL, max_position_embeddings=66, pad_token_id=0),
    "electra": dict(SMALL, embedding_size=32, max_position_embeddings=64),
    "distilbert": dict(dim=32, n_layers=N_LAYERS, n_heads=2, hidden_dim=64, max_position_embeddings=64),
}
# What ORT must fuse per family: every attention block, both residual LayerNorms of each layer,
# each FFN's bias+GELU, and the embeddings where the family allows. RoBERTa's position ids (a
# cumsum over input_ids) keep its embeddings unfused; see families.py.
FULL = {"Attention": N_LAYERS, "SkipLayerNormalization": 2 * N_LAYERS, "BiasGelu": N_LAYERS}
EXPECTED = {
    "bert": {**FULL, "EmbedLayerNormalization": 1},
    "roberta": {**FULL, "EmbedLayerNormalization": 0},
    "electra": {**FULL, "EmbedLayerNormalization": 1},
    # On transformers 4.x this needs bertfast's rewrite of DistilBERT's masked_fill attention
    # (exporter/rewrite.py); on 5.x the export itself emits the additive mask (exporter/trace.py).
    "distilbert": {**FULL, "EmbedLayerNormalization": 1},
}


@pytest.fixture(scope="module")
def tiny_families(tmp_path_factory):
    """model_type -> folder of a random tiny classifier of that family, with a BERT tokenizer."""
    import torch
    import transformers
    from conftest import _vocab, bert_tokenizer

    root = tmp_path_factory.mktemp("families")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(_vocab()) + "\n")
    tok = bert_tokenizer(vocab)
    out = {}
    for model_type, kw in CONFIGS.items():
        torch.manual_seed(0)
        cfg = transformers.AutoConfig.for_model(model_type, vocab_size=len(_vocab()), num_labels=3, **kw)
        d = root / model_type
        transformers.AutoModelForSequenceClassification.from_config(cfg).save_pretrained(d)
        tok.save_pretrained(d)
        out[model_type] = d
    return out


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_attention_fuses_per_family(tiny_families, model_type, tmp_path):
    import onnxruntime as ort
    import torch
    import transformers
    from transformers import AutoTokenizer

    from bertfast.exporter import optimize
    from bertfast.exporter.onnx import graph_inputs, load_torch_model, to_onnx

    src = tiny_families[model_type]
    config = json.loads((src / "config.json").read_text())
    model = load_torch_model(src)
    raw = to_onnx(model, tmp_path, 17)
    assert graph_inputs(raw) == list(family_of(config).inputs)
    fused = tmp_path / "fused.onnx"
    optimize.fuse(raw, fused, config)
    ops = optimize.op_counts(fused)
    for op, n in EXPECTED[model_type].items():
        assert ops.get(op, 0) == n, (model_type, transformers.__version__, op, ops)
    assert "Softmax" not in ops and "Erf" not in ops, ops  # nothing left unfused

    # The fused graph (and any rewrite before it) computes what PyTorch does, padding included.
    tok = AutoTokenizer.from_pretrained(src)
    enc = tok(["the match was won", "a new phone and a new chip for the data network"], padding=True, return_tensors="np")
    feeds = {k: enc[k].astype(np.int64) for k in graph_inputs(fused)}
    got = ort.InferenceSession(str(fused), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.inference_mode():
        ref = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_table_reads_each_family_config():
    import transformers

    for model_type, kw in CONFIGS.items():
        cfg = transformers.AutoConfig.for_model(model_type, vocab_size=100, **kw)
        dims = family_of(cfg).dims(cfg)
        assert dims == {"layers": N_LAYERS, "heads": 2, "hidden": 32, "intermediate": 64}, model_type
        assert family_of(cfg.to_dict()).dims(cfg.to_dict()) == dims  # dict and PretrainedConfig alike


def test_position_limit_and_head_params():
    assert FAMILIES["bert"].position_limit({"max_position_embeddings": 512}) == 512
    # RoBERTa counts positions from padding_idx + 1
    assert FAMILIES["roberta"].position_limit({"max_position_embeddings": 514, "pad_token_id": 1}) == 512
    assert FAMILIES["distilbert"].is_head("pre_classifier.weight")
    assert FAMILIES["bert"].is_head("bert.pooler.dense.weight")
    assert not FAMILIES["bert"].is_head("bert.encoder.layer.0.attention.self.query.weight")


def test_unknown_family_is_generic_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="bertfast.families"):
        fam = family_of({"model_type": "brand-new-encoder", "num_layers": 3, "d_model": 16})
    assert fam is GENERIC and "brand-new-encoder" in caplog.text
    assert fam.get({"num_layers": 3}, "layers") == 3


def test_training_uses_the_family_table():
    from transformers import RobertaConfig

    from bertfast.training.checkpoints import model_length_limit

    assert model_length_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
