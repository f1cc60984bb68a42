"""Mixed precision that earns the gate: the fewest encoder layers kept in fp32, found by measurement.

When no plain int8 variant keeps the accuracy and agreement budget, a fixed rule (first and last
layer in fp32) is a guess: which layers cause the flips depends on the model and the data. So
the export measures it on the validation inputs:

1. sensitivity: for each encoder layer, build int8 with that one layer kept in fp32 and measure,
   on a sample of the eval inputs, how many more decisions agree with PyTorch fp32 than
   all-int8's do, and how much closer its scores come (mean |score difference|); layers rank by
   decisions first, then scores;
2. greedy: keep the most sensitive layer in fp32, then the two most sensitive, ... and validate
   each candidate on the whole eval set with the export's gate; the first one accepted is the
   `int8-mixed` variant. At most half the layers: beyond that int8 saves too little to matter.
   If none is accepted, the last candidate is what gets validated (and rejected), and fp32
   stays the default, with the table saying why.

Every candidate runs through `Classifier` (the users' inference path), as validation does.
"""

from __future__ import annotations

import logging

import numpy as np

from .quantize import layer_nodes

log = logging.getLogger(__name__)

SAMPLE = 256  # eval inputs scored per sensitivity build (bounded: one build per layer)


def base_options(manifest) -> dict:
    """Dynamic int8 settings to start from: per-channel, and the weight range of whichever
    per-channel variant agreed most with PyTorch in validation."""
    best, reduce_range = -1.0, None
    for name, rr in (("int8-dynamic-pc", None), ("int8-dynamic-pc-fr", False)):
        val = (manifest.variants.get(name) or {}).get("validation") or {}
        if val.get("label_agreement", -1.0) > best:
            best, reduce_range = val["label_agreement"], rr
    return {"per_channel": True, "reduce_range": reduce_range}


def search(ctx, manifest, name: str, reference) -> dict:
    """Find the layers to keep in fp32 and build variant `name` with them into `ctx.folder`.

    Returns the record the manifest keeps under the variant's `mixed`: the base settings, each
    layer's measured sensitivity, the greedy steps (layers kept, figures, verdict) and
    `kept_fp32` (the layers of the built file). The variant's own `validation` is filled by
    the export's validation run, like every other variant.
    """
    from ..runtime.classifier import Classifier
    from . import quantize
    from .variants import VARIANTS

    inputs, ref, gate, threads = reference.inputs, reference.scores, reference.gate, reference.threads

    opts = base_options(manifest)
    layers = layer_nodes(ctx.shaped())
    dst = ctx.folder / VARIANTS[name].file
    # Register the file so Classifier.load can run each candidate as users would.
    manifest.variants[name] = {"status": "ok", "file": VARIANTS[name].file, "precision": "int8",
                               "devices": list(VARIANTS[name].providers), "description": VARIANTS[name].description}
    manifest.write(ctx.folder)

    def run(kept: list[int], rows) -> np.ndarray:
        exclude = [n for i in kept for n in layers[i]]
        quantize.dynamic(ctx.shaped(), dst, ctx.preset, exclude=exclude, **opts)
        with Classifier.load(ctx.folder, device="cpu", variant=name, threads=threads, max_length=manifest.max_length,
                             long_text="truncate") as clf:
            return clf.predict_proba([inputs[i] for i in rows])

    rows = np.unique(np.linspace(0, len(inputs) - 1, min(len(inputs), SAMPLE)).astype(int))

    def score(p: np.ndarray) -> tuple[float, float]:
        # (decisions kept, mean |score difference|) vs PyTorch on the sample, in the task's terms
        agree = gate.task.agreement(p, ref[rows], gate.thresholds)["label_agreement"]
        return float(agree), float(np.abs(p - ref[rows]).sum(axis=1).mean())

    base_agree, base_err = score(run([], rows))
    gains = {}
    for i in layers:
        agree, e = score(run([i], rows))
        gains[i] = (round(agree - base_agree, 6), round(base_err - e, 6))
        log.debug("  layer %d in fp32: %+.2f%% decisions kept, mean |ds| %.5f lower", i, 100 * gains[i][0], gains[i][1])
    # Decisions first (what the gate counts), then the score error (finer, less noisy).
    order = sorted(layers, key=lambda i: (-gains[i][0], -gains[i][1]))
    sensitivity = {i: {"agreement_gain": g[0], "mean_abs_diff_gain": g[1]} for i, g in gains.items()}
    steps, kept = [], []
    everything = np.arange(len(inputs))
    for k in range(1, max(1, len(layers) // 2) + 1):
        kept = sorted(order[:k])
        val = reference.compare(run(kept, everything))
        ok, reason = gate.judge(val)
        steps.append({"kept_fp32": kept, "metric_drop_points": val["metric_drop_points"],
                      gate.agreement_key: val[gate.agreement_key], "eligible": ok, "reason": reason})
        log.info("  int8 with layer(s) %s in fp32: %s", ",".join(map(str, kept)), "ok" if ok else reason)
        if ok:
            break
    return {"base": {"per_channel": True, "reduce_range": opts["reduce_range"]}, "sample": int(len(rows)),
            "base_agreement": round(base_agree, 6), "base_mean_abs_diff": round(base_err, 6),
            "sensitivity": {str(i): s for i, s in sensitivity.items()},
            "steps": steps, "kept_fp32": kept, "layers": len(layers)}


def build(name: str, ctx, manifest, reference) -> dict:
    """Variant `name`'s manifest record, built by `search` through `variants.build` (which
    records a failure and lets the export go on, as for any variant)."""
    from . import variants

    def make(ctx, dst) -> dict:
        found = search(ctx, manifest, name, reference)
        kept = ", ".join(map(str, found["kept_fp32"])) or "none"
        return {"description": f"int8 dynamic per-channel, encoder layer(s) {kept} of {found['layers']} kept fp32 "
                               "(the most sensitive, measured on the eval data)", "mixed": found}

    return variants.build(name, ctx, make=make)
