"""The window search: the cheapest (variant, window length, long-text mode) the gate accepts.

On long texts the window the model was trained with costs more than the precision: attention
and every matrix multiply scale with it, and most classification tasks are decided by the first
few dozen tokens. No tool tells its users how short a window their task tolerates, so the
export measures it: each variant the gate accepted at the training length is validated again
at shorter windows (3/4, 1/2 and 1/4 of it, keeping the start, and keeping head + tail for
single texts), against the *same* PyTorch fp32 reference at the training length and with the
same gate (metric drop and agreement). Then every accepted (variant, window) is timed in one
interleaved run and the fastest becomes the CPU default; the manifest records it (`window`) and
`Classifier.load` uses it unless the caller sets `max_length` or `long_text`.

Bounded work: a window at or over the longest eval input is skipped (the eval data cannot show
what it changes), and each mode goes from long to short and stops at the first window the gate
rejects (a shorter window sees less of every text than one that already failed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

FRACTIONS = (0.75, 0.5, 0.25)  # of the training length
MIN_WINDOW = 16  # tokens incl. special tokens; shorter windows classify almost nothing
MULTIPLE = 8  # windows rounded down to a multiple of 8 (kernel-friendly shapes)
SINGLE_TEXT_MODES = ("truncate", "head-tail")
PAIR_MODES = ("truncate",)  # pairs are cut by the export's pair_truncation; head-tail is for single texts


@dataclass(frozen=True)
class Window:
    """Tokens per window (special tokens included) and how a longer text is cut."""

    max_length: int
    long_text: str = "truncate"

    @property
    def name(self) -> str:
        return str(self.max_length) if self.long_text == "truncate" else f"{self.max_length} {self.long_text}"

    def as_dict(self) -> dict:
        return {"max_length": self.max_length, "long_text": self.long_text}


def grid(max_length: int, longest: int, pair: bool) -> dict[str, list[int]]:
    """Shorter window lengths to try per mode, longest first (none at or over `longest`)."""
    lengths = sorted({max(MIN_WINDOW, int(max_length * f) // MULTIPLE * MULTIPLE) for f in FRACTIONS}, reverse=True)
    lengths = [n for n in lengths if n < max_length and n < longest]
    return {mode: lengths for mode in (PAIR_MODES if pair else SINGLE_TEXT_MODES)} if lengths else {}


def longest_input(tokenizer_file, inputs: list) -> int:
    """Tokens of the longest input, untruncated, special tokens included."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    if not inputs:
        return 0
    return max(len(e.ids) for e in tok.encode_batch([tuple(x) if isinstance(x, (tuple, list)) else x for x in inputs]))


def search(manifest, reference) -> dict | None:
    """Validate shorter windows of the CPU variants the gate accepted; time all accepted ones.

    Writes each searched variant's `windows` (one entry per window tried, the training length
    first: validation figures, eligible, reason, speed) and returns the chosen
    `{"variant", "max_length", "long_text"}` for the CPU; None when no shorter window was
    accepted (the default stays as validation chose it, at the training length).
    """
    from ..runtime.classifier import Classifier
    from . import speed

    inputs, gate, threads = reference.inputs, reference.gate, reference.threads

    names = [n for n, v in manifest.variants.items()
             if v.get("eligible") and (v.get("speed") or {}).get("device") == "cpu"]
    if not names:
        return None
    full = Window(manifest.max_length)
    longest = longest_input(manifest.tokenizer_file, inputs)
    modes = grid(manifest.max_length, longest, manifest.pair)
    if not modes:
        log.info("window search: every eval input fits in %d tokens or less; nothing shorter to try", longest)
    loaded: dict[tuple[str, Window], object] = {}
    entries: dict[str, list[dict]] = {}
    try:
        for name in names:
            v = manifest.variants[name]
            loaded[name, full] = Classifier.load(manifest.folder, device="cpu", variant=name, threads=threads,
                                                 **full.as_dict())
            entries[name] = [_entry(full, v["validation"], True, v["reason"])]
            for mode, lengths in modes.items():
                for n in lengths:
                    w = Window(n, mode)
                    clf = Classifier.load(manifest.folder, device="cpu", variant=name, threads=threads, **w.as_dict())
                    val = reference.compare(clf.predict_proba(inputs), counted=bool(v.get("student")))
                    ok, reason = gate.judge(val)
                    entries[name].append(_entry(w, val, ok, reason))
                    log.debug("  %-19s window %-14s %s %s  agree %.4f  %s", name, w.name, gate.primary,
                             _shown(val.get(gate.primary)), val[gate.agreement_key], "ok" if ok else "REJECTED")
                    if not ok:
                        clf.close()
                        break  # shorter windows of this mode see even less of each text
                    loaded[name, w] = clf
        keys = list(loaded)
        shorter = any(w != full for _, w in keys)
        # Nothing shorter accepted: the variants' own timing stands, and so does their default.
        speeds = speed.interleaved({i: loaded[k] for i, k in enumerate(keys)}, inputs) if shorter else {
            i: manifest.variants[name]["speed"] for i, (name, _) in enumerate(keys)}
    finally:
        for clf in loaded.values():
            clf.close()
    for i, (name, w) in enumerate(keys):
        for e in entries[name]:
            if (e["max_length"], e["long_text"]) == (w.max_length, w.long_text):
                e["speed"] = speeds[i]
    for name, es in entries.items():
        manifest.variants[name]["windows"] = es
    return choose(manifest.variants) if shorter else None


def _entry(w: Window, val: dict, ok: bool, reason: str) -> dict:
    keep = ("accuracy", "macro_f1", "micro_f1", "exact_match", "pearson", "spearman", "mae", "ndcg@10", "mrr",
            "label_agreement", "top1_agreement", "max_abs_prob_diff", "metric_drop_points", "accuracy_drop_points", "n")
    return {**w.as_dict(), "validation": {k: val[k] for k in keep if k in val}, "eligible": ok, "reason": reason,
            "speed": None}


def _shown(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def choose(variants: dict) -> dict | None:
    """The fastest accepted (variant, window) on the CPU beyond the timing noise.

    Among candidates no other beats (`speed.pick`), a batch-invariant variant wins, then the
    longer window (it sees more of each text), then the most faithful.
    """
    from .report import faithfulness
    from .speed import pick

    cands = [((n, i), e["speed"]) for n, v in variants.items() for i, e in enumerate(v.get("windows") or [])
             if e.get("eligible") and e.get("speed")]
    if not cands:
        return None

    def faithful(key):
        name, i = key
        e = variants[name]["windows"][i]
        invariant = -(variants[name].get("validation") or {}).get("batch_flips", 0.0)
        return (invariant, e["max_length"], faithfulness(e["validation"]))

    name, i = pick(cands, faithful)
    e = variants[name]["windows"][i]
    return {"variant": name, "max_length": e["max_length"], "long_text": e["long_text"]}
