"""Mixed precision by measured sensitivity (bertfast/exporter/mixed.py)."""

from __future__ import annotations

import pytest

from bertfast.exporter import mixed
from bertfast.exporter.optimize import op_counts
from bertfast.manifest import load_manifest

N_LAYERS = 2  # the tiny fixture model


def test_layer_nodes_group_every_quantizable_node(tiny_export):
    groups = mixed.layer_nodes(tiny_export / "model.onnx")
    assert sorted(groups) == list(range(N_LAYERS))
    # Per layer: the fused Attention and its three dense MatMuls (output, intermediate, output).
    assert all(len(nodes) == 4 for nodes in groups.values())
    assert sum("Attention" in n for nodes in groups.values() for n in nodes) == N_LAYERS


def test_base_options_follow_the_more_faithful_per_channel_variant():
    class M:
        variants = {"int8-dynamic-pc": {"validation": {"label_agreement": 0.99}},
                    "int8-dynamic-pc-fr": {"validation": {"label_agreement": 0.995}}}
    assert mixed.base_options(M) == {"per_channel": True, "reduce_range": False}
    M.variants["int8-dynamic-pc"]["validation"]["label_agreement"] = 1.0
    assert mixed.base_options(M) == {"per_channel": True, "reduce_range": None}  # the preset's range


@pytest.fixture(scope="module")
def strict_export(tiny_trained, tmp_path_factory):
    """An auto export whose gate rejects everything, so the fallback's search runs all its steps."""
    from bertfast.exporter import ExportConfig, export
    from bertfast.exporter.validate import Gate

    out = tmp_path_factory.mktemp("strict") / "ex"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Gate, "judge", lambda self, val: (False, "rejected by the test"))
        return export(ExportConfig(model_dir=str(tiny_trained), out=str(out), window_search=False,
                                   accept_weak_reference=True))  # tiny_trained answers at chance


def test_fallback_is_built_from_measured_sensitivity(strict_export):
    m = load_manifest(strict_export)
    assert m.default["cpu"] == "fp32"  # nothing accepted: fp32 is the honest default
    v = m.variants["int8-mixed"]
    rec = v["mixed"]
    assert sorted(rec["sensitivity"]) == [str(i) for i in range(N_LAYERS)]
    assert rec["layers"] == N_LAYERS and 1 <= len(rec["steps"]) <= N_LAYERS // 2
    # The greedy keeps the most sensitive layer first.
    sens = rec["sensitivity"]
    most = max(sens, key=lambda i: (sens[i]["agreement_gain"], sens[i]["mean_abs_diff_gain"]))
    assert rec["steps"][0]["kept_fp32"] == [int(most)]
    assert rec["kept_fp32"] == rec["steps"][-1]["kept_fp32"]
    # The built file keeps exactly those layers in fp32: their Attention and MatMuls unquantized.
    ops = op_counts(m.variant_file("int8-mixed"))
    kept = len(rec["kept_fp32"])
    assert ops.get("Attention", 0) == kept and ops.get("QAttention", 0) == N_LAYERS - kept
    assert ops.get("MatMul", 0) >= 3 * kept
    assert f"layer(s) {', '.join(map(str, rec['kept_fp32']))} of {N_LAYERS} kept fp32" in v["description"]
    # Validated like every variant, and judged by the same gate.
    assert v["validation"]["n"] == m.eval_data["rows"]
    assert v["eligible"] == rec["steps"][-1]["eligible"]
