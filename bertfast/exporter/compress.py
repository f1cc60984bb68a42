"""`bertfast export --compress`: smaller students inside the same gate.

After the teacher's own variants are validated, each recipe of `students.RECIPES` (fewer layers,
then also narrower ones) makes a student from the user's fine-tuned model:
1. its speed is predicted before any training: the untrained student is exported, quantized
   (int8 dynamic per-channel) and timed against the teacher's same variant on the eval inputs,
   interleaved (speed does not depend on the weights); a student that would not run at least
   `MIN_SPEEDUP` x faster is skipped;
2. its training time is measured on a few steps and compared with what is left of the budget
   (`--compress-budget`): a student that does not fit is skipped, and said so;
3. it is distilled on the teacher's scores (`exporter/distill.py`) over the training split's
   texts plus `--distill-data` (and, with `--distill-windows N`, up to N later windows of each
   text longer than the max length; with `--distill-augment N`, N perturbed copies of each
   text; with `--distill-mix N`, N mixes of each text with others), for `--distill-epochs`;
   pruned recipes are distilled, pruned by importance, re-distilled;
4. it is exported (fp32 and int8 dynamic per-channel) into `students/<recipe>/` and its variants
   (`<recipe>-<variant>`) join the manifest; the export's validation then judges them against
   the teacher's PyTorch fp32 scores with the same gate, and the default is chosen among all.

The work folder `<out>.compress/` (teacher scores, training states) lets `--resume` continue an
interrupted search; it is removed when the export is written.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np

from ..errors import BertfastError
from . import distill, students

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.2
STUDENT_VARIANTS = ("fp32", "int8-dynamic-pc")
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_budget(text: str, flag: str = "--compress-budget") -> float:
    """Seconds from "20m", "1.5h", "900s" or "900"."""
    m = _BUDGET.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise BertfastError(f"{flag} must be a duration such as 20m, 1h or 900s; got {text!r}.")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def work_dir(out: Path) -> Path:
    return out.with_name(out.name + ".compress")


def distill_inputs(cfg, model_dir: Path, pair: bool) -> tuple[list, str]:
    """The texts students learn from: the training split bertfast saved plus `--distill-data`."""
    from ..training.data import read_labeled
    from .evalset import training_inputs

    inputs, what = list(training_inputs(model_dir, pair)), []
    if inputs:
        what.append(f"training split ({len(inputs)})")
    if cfg.distill_data:
        d = read_labeled(cfg.distill_data, cfg.text_column, None, "distill", cfg.text_pair_column if pair else None)
        if pair and d.pairs is None:  # single texts would teach a pair model inputs it never sees
            raise BertfastError(f"--distill-data {cfg.distill_data}: the model classifies text pairs; pass "
                                "--text-pair-column COLUMN (the file's second-text column).")
        inputs += list(d.inputs())
        what.append(f"{cfg.distill_data} ({len(d)})")
    if not inputs:
        raise BertfastError(
            f"--compress needs texts to distill on: {model_dir} has no saved training split (splits/train.jsonl); "
            "pass --distill-data FILE (texts alone are enough)."
        )
    return inputs, " + ".join(what)


def without_gate_inputs(inputs: list, gate_inputs: list) -> tuple[list, int]:
    """The distillation inputs minus those the gate judges on (--eval-data, --agreement-data):
    a student's flips are counted on the gate's inputs, and a student that learned an input
    would agree on it by rote, so its count would promise more than unseen texts give."""
    judged = set(gate_inputs)
    kept = [x for x in inputs if x not in judged]
    if len(kept) < len(inputs):
        log.warning("--compress: %d distillation text(s) are also the gate's inputs (--eval-data / --agreement-data); "
                    "left out of distillation so the students are judged on texts they never learned from",
                    len(inputs) - len(kept))
    if not kept:
        raise BertfastError("--compress: every distillation text is also one the gate judges on; pass --distill-data "
                            "with texts that are not in --eval-data or --agreement-data.")
    return kept, len(inputs) - len(kept)


def provable(reference) -> dict:
    """The best a student can show the gate: its flips are counted (Wilson, `evidence.counted_rate`),
    so even with none on the gate's n units (inputs; queries when ranked) the 95% bound is
    n / (n + z^2), and it reaches `min_agreement` only from n >= z^2 a / (1 - a) units
    (99.5%: 765; 99%: 381). Said before any distillation, so a search the gate cannot pass
    on these inputs is not a surprise after the budget is spent."""
    from .evidence import Z, wilson

    gate = reference.gate
    n = len(np.unique(gate.groups)) if gate.ranking else len(reference.inputs)
    a = gate.min_agreement / 100
    need = None if a >= 1 else int(np.ceil(Z * Z * a / (1 - a) - 1e-9))
    return {"units": n, "unit": "queries" if gate.ranking else "inputs", "best_bound": wilson(n, n)[0],
            "units_needed": need}


def run(cfg, src, ctx, m, reference, progress) -> dict:
    """Make, time, distill, export and register the students (see the module docstring);
    returns the manifest's `compression` block."""
    why = students.supports(src.family)
    if why:
        log.warning("--compress: %s; the export goes on without students", why)
        return {"skipped": why}
    deadline = time.monotonic() + parse_budget(cfg.compress_budget)
    work = work_dir(Path(cfg.out))
    inputs, source = distill_inputs(cfg, src.model_dir, src.ev.pair)
    inputs, left_out = without_gate_inputs(inputs, reference.inputs)
    copies = distill.augment(inputs, cfg.distill_augment, getattr(src.tokenizer, "mask_token", None))
    mixes = distill.mix(inputs, cfg.distill_mix, distill.mix_words(src.max_length))
    inputs += copies + mixes
    key = distill.fingerprint(m.source.get("sha256"), inputs, src.max_length, cfg.distill_windows)
    targets = distill.teacher_logits(src.model, src.tokenizer, inputs, src.max_length, m.inputs,
                                     work / f"teacher-{key}.npy", cfg.distill_windows)
    block = {"teacher_sha256": m.source.get("sha256"), "data": source, "texts": len(inputs),
             "windows": len(targets), "later_windows_per_text": cfg.distill_windows,
             "gate_inputs_left_out": left_out, "augmented_copies": len(copies),
             "mixes": len(mixes),
             "loss": distill.LOSSES[cfg.distill_loss],
             "epochs": cfg.distill_epochs, "budget": cfg.compress_budget, "students": {}}
    block["provable"] = best = provable(reference)
    if 100 * best["best_bound"] < reference.gate.min_agreement:
        log.warning("--compress: a student's flips are counted on the gate's %d %s: even with none the 95%% bound is "
                    "%.2f%% < --min-agreement %g%%, so no student can become the default; they are built for the "
                    "table. A student with no flips needs %s %s (--eval-data / --agreement-data), or a lower "
                    "--min-agreement", best["units"], best["unit"], 100 * best["best_bound"],
                    reference.gate.min_agreement, f"{best['units_needed']:,}" if best["units_needed"] else "more",
                    best["unit"])
    teacher_dims = src.family.dims(src.model.config)
    seen: dict = {}
    for recipe in students.pick(cfg.students):
        progress.say(f"student {recipe.name}: predicting its speed, then distilling within the budget")
        shape = (recipe.dims(teacher_dims)["layers"], recipe.ffn, recipe.heads)
        if shape in seen:  # a small teacher rounds several recipes to one student
            block["students"][recipe.name] = {"status": f"skipped: the same student as {seen[shape]}"}
            continue
        seen[shape] = recipe.name
        record = _one(cfg, src, ctx, m, reference, recipe, teacher_dims, inputs, targets, work, deadline)
        block["students"][recipe.name] = record
        log.info("  student %s: %s", recipe.name, record.get("status"))
    if not any(r["status"].startswith("built") for r in block["students"].values()):
        log.warning("--compress: no student was built (%s); the export keeps the teacher's own variants",
                    "; ".join(f"{k} {r['status']}" for k, r in block["students"].items()))
    return block


def _one(cfg, src, ctx, m, reference, recipe, teacher_dims, inputs, targets, work, deadline) -> dict:
    """One student's record (and its variants in `m` when it was built)."""
    student, kept = students.drop_layers(src.model, src.family, recipe)
    record = {"recipe": {"layers": recipe.layers, "ffn": recipe.ffn, "heads": recipe.heads},
              "kept_layers": kept, "dims": recipe.dims(teacher_dims)}
    speedup = predicted_speedup(student, ctx, m, reference, recipe, cfg.opset)
    record["predicted_speedup"] = round(speedup, 3) if np.isfinite(speedup) else None
    if speedup < MIN_SPEEDUP:
        return {**record, "status": f"skipped: predicted {speedup:.2f}x the teacher's speed < {MIN_SPEEDUP}x"}
    d = distill.Distiller(student, src.tokenizer, inputs, targets, src.max_length, m.inputs, work / recipe.name,
                          cfg.distill_epochs, windows=cfg.distill_windows, **_hidden_targets(cfg, src, teacher_dims, kept))
    resumed = cfg.resume and d.resume()
    left = deadline - time.monotonic()
    need = d.seconds_per_step() * (d.total - d.step) * (1.5 if recipe.ffn < 1 or recipe.heads < 1 else 1.0)
    if need > left:
        # The budget that would have fitted it: what the search had spent before it, plus its need.
        fits = int(np.ceil((parse_budget(cfg.compress_budget) - left + need) / 60))
        return {**record, "status": f"skipped: needs ~{need / 60:.0f} min of distillation, {max(left, 0) / 60:.0f} "
                                    f"min of --compress-budget left (--compress-budget {fits}m fits it)"}
    done = d.run(deadline)
    if done and (recipe.ffn < 1 or recipe.heads < 1):
        done = _prune_and_redistill(student, src, recipe, d, inputs, targets, work, deadline, record, cfg)
    record.update(resumed=bool(resumed), distilled_steps=d.step, complete=done, **students.size(student))
    _register(student, src, ctx, m, recipe, cfg.opset)
    return {**record, "status": "built" if done else "built (budget ran out mid-distillation)"}


def _prune_and_redistill(student, src, recipe, d, inputs, targets, work, deadline, record, cfg) -> bool:
    batches = [(distill._collate(d.rows, idx, d.names), d.targets[idx])
               for idx in distill._batches(d.rows, list(range(len(d.rows))), distill.BATCH)[:32]]
    ffn_imp, head_imp = students.importance(student, src.family, batches, distill.loss_fn)
    record["pruned"] = students.prune(student, src.family, recipe, ffn_imp, head_imp)
    again = distill.Distiller(student, src.tokenizer, inputs, targets, src.max_length, d.names,
                              work / f"{recipe.name}-pruned", cfg.distill_epochs / 2, windows=cfg.distill_windows,
                              teacher=d.teacher, layer_map=d.layer_map)
    return again.run(deadline)


def _hidden_targets(cfg, src, teacher_dims: dict, kept: list[int]) -> dict:
    """The Distiller's teacher and layer map under `--distill-loss hidden` (none for `logits`)."""
    if cfg.distill_loss != "hidden":
        return {}
    return {"teacher": src.model, "layer_map": students.layer_targets(teacher_dims["layers"], len(kept))}


def predicted_speedup(student, ctx, m, reference, recipe, opset: int) -> float:
    """The untrained student's int8 speed over the teacher's, timed interleaved on the eval
    inputs through the runtime users get (speed does not depend on the weights)."""
    import dataclasses
    import shutil

    from ..runtime.classifier import Classifier
    from . import speed
    from .onnx import to_onnx
    from .variants import build

    name = "int8-dynamic-pc"
    if m.variants.get(name, {}).get("status") != "ok":
        return float("inf")  # nothing to compare with: let the gate and the timing after training decide
    probe = ctx.scratch / f"probe-{recipe.name}"
    probe.mkdir(parents=True, exist_ok=True)
    # The student's own config: fusion checks count its layers, not the teacher's.
    pctx = dataclasses.replace(ctx, folder=probe, scratch=probe, raw=to_onnx(student, probe, opset),
                               config=student.config.to_dict(), _shaped=None)
    build("fp32", pctx)
    rec = build(name, pctx)
    if rec.get("status") != "ok":
        return 0.0
    for f in ("tokenizer.json", "config.json"):
        shutil.copy2(ctx.folder / f, probe / f)
    dataclasses.replace(m, variants={name: rec}, default={"cpu": name}, window=None, batching=None).write(probe)
    loaded = {"teacher": Classifier.load(ctx.folder, device="cpu", variant=name, threads=reference.threads),
              "student": Classifier.load(probe, device="cpu", variant=name, threads=reference.threads)}
    try:
        rates = speed.interleaved(loaded, reference.inputs, rounds=3)
    finally:
        for clf in loaded.values():
            clf.close()
        shutil.rmtree(probe, ignore_errors=True)
    return rates["student"]["seq_per_s"] / max(rates["teacher"]["seq_per_s"], 1e-9)


def _register(student, src, ctx, m, recipe, opset: int) -> None:
    """Export the student into students/<recipe>/ and add its variants to the manifest."""
    import dataclasses

    from .onnx import to_onnx
    from .variants import build

    folder = ctx.folder / "students" / recipe.name
    scratch = ctx.scratch / f"student-{recipe.name}"
    for p in (folder, scratch):
        p.mkdir(parents=True, exist_ok=True)
    student.config.save_pretrained(str(folder))  # Optimum / transformers read the student's own config
    raw = to_onnx(student, scratch, opset)
    sctx = dataclasses.replace(ctx, folder=folder, scratch=scratch, raw=raw, config=student.config.to_dict(),
                               _shaped=None)
    dims = src.family.dims(student.config)
    for name in STUDENT_VARIANTS:
        rec = build(name, sctx)
        if rec.get("file"):
            rec["file"] = f"students/{recipe.name}/{rec['file']}"
        rec["description"] = f"{dims['layers']}-layer student ({recipe.name}), {rec['description']}"
        rec["student"] = recipe.name
        m.variants[f"{recipe.name}-{name}"] = rec
