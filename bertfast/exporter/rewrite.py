"""Graph rewrites applied before ONNX Runtime's transformer optimizer, so that it fuses attention.

DistilBERT's eager attention scales q *before* `q @ k^T` and masks with
`scores.masked_fill(mask == 0, finfo.min)`, which exports as `Softmax(Where(mask_cond, min, MatMul))`.
ONNX Runtime's `FusionAttention` matches that shape ("path3"/`is_distill`), but since ORT 1.2x it
then reads the mask-filter constant from the *first* node of the matched mask path (an `Expand`
or `Equal` here, with no negative scalar input) and gives up, so no DistilBERT layer fuses
(onnxruntime/transformers/fusion_attention.py, the `mul_val` check after the mask paths).

We rewrite each such block into the additive-mask form BERT exports and ORT fuses:
`Softmax(Add(Div(MatMul, 1), Mul(Sub(1, Cast(Unsqueeze(Unsqueeze(attention_mask)))), min)))`.
Both forms compute the same probabilities (a masked score becomes `s + min`, which softmax sends
to 0 exactly like `min`), so the graph stays correct even where the fusion would still not match.
The identity `Div(.., 1)` only gives the matcher its expected "scale after MatMul" node (a Div,
not a Mul: the mask path is found as the Add's Mul parent); the
fused Attention applies the 1/sqrt(head_size) scale that the removed `Div` on q did.

This is transformers 4.x's DistilBERT. On transformers 5 the export runs under
`trace.traceable`, which already emits the additive mask, so no `Where` block is found and the
rewrite is a no-op there.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

_MASK_INPUT = "attention_mask"


def masked_fill_to_additive(model) -> int:
    """Rewrite every `Softmax(Where(cond, c, MatMul))` attention block of `model` in place.

    Args:
        model: an `onnx.ModelProto` with an `attention_mask` graph input.

    Returns:
        The number of blocks rewritten (0 when the graph has none, e.g. BERT).
    """
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    if _MASK_INPUT not in {i.name for i in g.input}:
        return 0
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    blocks = []
    for sm in (n for n in g.node if n.op_type == "Softmax"):
        where = producer.get(sm.input[0])
        if where is None or where.op_type != "Where" or len(consumers.get(where.output[0], [])) != 1:
            continue
        scores = producer.get(where.input[2])
        fill = _scalar(g, producer, where.input[1])
        if scores is None or scores.op_type != "MatMul" or fill is None or fill >= 0:
            continue
        if not _depends_on_mask(where.input[0], producer):
            continue  # a causal or other mask: not ours to reinterpret
        blocks.append((sm, where, fill))
    if not blocks:
        return 0

    # One shared additive mask (batch, 1, 1, seq), the exact shape ORT's BERT mask path expects.
    fill = min(f for _, _, f in blocks)
    p = "bertfast_additive_mask"
    inits = [numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}_axis1"),
             numpy_helper.from_array(np.array([2], dtype=np.int64), f"{p}_axis2"),
             numpy_helper.from_array(np.array(1.0, dtype=np.float32), f"{p}_one"),
             numpy_helper.from_array(np.array(fill, dtype=np.float32), f"{p}_fill")]
    nodes = [
        helper.make_node("Unsqueeze", [_MASK_INPUT, f"{p}_axis1"], [f"{p}_u1"], name=f"{p}/Unsqueeze1"),
        helper.make_node("Unsqueeze", [f"{p}_u1", f"{p}_axis2"], [f"{p}_u2"], name=f"{p}/Unsqueeze2"),
        helper.make_node("Cast", [f"{p}_u2"], [f"{p}_f"], name=f"{p}/Cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", [f"{p}_one", f"{p}_f"], [f"{p}_inv"], name=f"{p}/Sub"),
        helper.make_node("Mul", [f"{p}_inv", f"{p}_fill"], [p], name=f"{p}/Mul"),
    ]
    for sm, where, _ in blocks:
        scaled, added = f"{where.name}/bertfast_scale", f"{where.name}/bertfast_add"
        nodes += [helper.make_node("Div", [where.input[2], f"{p}_one"], [scaled], name=scaled),
                  helper.make_node("Add", [scaled, p], [added], name=added)]
        sm.input[0] = added
        g.node.remove(where)
    g.initializer.extend(inits)
    g.node.extend(nodes)
    _prune(g)
    _toposort(g)
    log.debug("rewrote %d masked_fill attention block(s) to the additive-mask form", len(blocks))
    return len(blocks)


def _scalar(g, producer, name: str) -> float | None:
    """The value of a scalar constant (initializer or Constant node), else None."""
    from onnx import numpy_helper

    for init in g.initializer:
        if init.name == name:
            arr = numpy_helper.to_array(init)
            return float(arr.reshape(-1)[0]) if arr.size == 1 else None
    node = producer.get(name)
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                arr = numpy_helper.to_array(a.t)
                return float(arr.reshape(-1)[0]) if arr.size == 1 else None
    return None


def _depends_on_mask(name: str, producer, depth: int = 8) -> bool:
    """Whether tensor `name` is computed from the `attention_mask` input within a few nodes."""
    if name == _MASK_INPUT:
        return True
    node = producer.get(name)
    if node is None or depth == 0:
        return False
    return any(_depends_on_mask(i, producer, depth - 1) for i in node.input if i)


def _prune(g) -> None:
    """Drop nodes whose outputs nothing reads (the old mask subgraphs)."""
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def _toposort(g) -> None:
    """Order nodes so each comes after the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, ordered = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a missing input: leave the order to the checker
            ordered += rest
            break
        pending = rest
    del g.node[:]
    g.node.extend(ordered)
