"""Distillation: a student learns the teacher's scores on texts, labels not needed.

The teacher (the user's fp32 model, at its own max length) scores the distillation texts once;
the scores are cached in the work folder, keyed by the teacher's weights hash and the texts, so
a resumed or repeated search does not pay for them again. The student minimizes the mean squared
error to the teacher's logits: for softmax and sigmoid heads the logits carry the soft labels and
the margins the gate's evidence reads, for a score model they are the score, so one loss serves
every task (Ba & Caruana 2014; TinyBERT's prediction-layer loss).

With `--distill-loss hidden`, each student layer's output also learns the teacher's hidden
states at the matching depth (`students.layer_targets`: a 3-of-6 student's layers 1-3 learn the
teacher's 2, 4, 6), mean squared error over the real tokens (TinyBERT's hidden-state loss; Sun et
al. 2019, "Patient KD"): every token then carries a target, not only the text's few logits. The
teacher runs beside the student for it (inference mode, no gradients); its logits still come
from the cache. It is not the default: on MiniLM-L6 / BBC (3-of-6 student, same steps) it kept
no more of the teacher's labels on unseen texts (test articles 4 flips vs 3 of 223, headlines 27
vs 23 of 446) and took 1.47x the time (benchmarks/results/distill-loss-minilm-bbc).

With `--distill-augment N`, each distillation text also comes in N perturbed copies (`augment`:
words masked, some copies cut to a span of words; Tang et al. 2019, "Distilling task-specific
knowledge from BERT into simple neural networks"), each scored by the teacher: the student then
learns the teacher's answers around the texts, not only on them. Off by default: on MiniLM-L6 /
BBC (3-of-6 student) two copies per text kept no more labels, at equal steps or at 2.75x them
(benchmarks/results/distill-augment-minilm-bbc, -long).

With `--distill-mix N`, each distillation text also comes in N cut-and-paste mixes with other
texts (`mix`), scored by the teacher: texts near its decision boundaries. Off by default: on
MiniLM-L6 / BBC (4-of-6 student, 1,002 validation articles) two mixes per text cut unseen
headlines' flips (95 vs 121 of 1,225 at equal steps) but not the gated articles' (16 vs 17; at
twice the steps 14 vs 12) (benchmarks/results/distill-mix-minilm-bbc-val45).

Training state is saved after every epoch and when the time budget runs out (`state.pt` in the
student's work folder): `--resume` continues from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BATCH = 16
LR = 1e-4
WARMUP = 0.06
STEP_SEED = 1_000_003  # dropout seed per step: seed + STEP_SEED x epoch + batch
# --distill-loss: name -> what the manifest records; the first is the default (measured, see above).
LOSSES = {"logits": "mse on logits", "hidden": "mse on logits + hidden states"}


# `augment`: the share of words masked in a copy, and the share of copies cut to a span of words
# (Tang et al. 2019 masked at 0.1 and sampled n-grams at 0.25).
MASK_P = 0.1
SPAN_P = 0.25


def augment(inputs: list, copies: int, mask_token: str | None, seed: int = 0) -> list:
    """`copies` perturbed copies of each input (texts, or pairs whose second text is perturbed),
    seeded: each word is replaced by `mask_token` (deleted when the tokenizer has none) with
    probability MASK_P, and with probability SPAN_P only a random span of the words is kept
    (between 3 words and all of them: the short texts a long-text dataset lacks). Copies equal
    to their input are dropped (a short text may come out unchanged)."""
    rng = random.Random(seed)

    def perturb(text: str) -> str:
        words = text.split()
        if len(words) > 3 and rng.random() < SPAN_P:
            n = rng.randint(3, len(words))
            start = rng.randint(0, len(words) - n)
            words = words[start:start + n]
        out = [mask_token if rng.random() < MASK_P else w for w in words]
        return " ".join(w for w in out if w)  # no mask token: the masked word is dropped

    extra = []
    for x in inputs:
        for _ in range(copies):
            y = (x[0], perturb(x[1])) if isinstance(x, tuple) else perturb(x)
            if y != x and (y[1] if isinstance(y, tuple) else y).strip():
                extra.append(y)
    return extra


def mix_words(max_length: int) -> int:
    """Words that about fill a window of `max_length` tokens (English WordPiece runs about 1.3
    tokens a word), so a mix's cut falls inside what the models read."""
    return max(2, max_length * 3 // 4)


def mix(inputs: list, copies: int, max_words: int, seed: int = 0) -> list:
    """`copies` cut-and-paste mixes per input, seeded: the input's first k words (k drawn within
    its first `max_words`), then another input's first words up to `max_words` in all; a pair
    keeps its first text and mixes the second. As k moves, a mix crosses from one input's answer
    to another's, so the teacher scores texts near its own decision boundaries: where students
    flip (benchmarks/results/compress-minilm-bbc-val45/flips-by-margin). Text-space cousin of
    MixKD (Liang et al. 2021), which mixes embeddings; words suffice here because the teacher's
    scores are cached per text."""
    rng = random.Random(seed)
    pair = bool(inputs) and isinstance(inputs[0], tuple)
    words = [(x[1] if pair else x).split() for x in inputs]
    extra = []
    for i, x in enumerate(inputs):
        a = words[i][:max_words]
        if len(a) < 2 or len(inputs) < 2:
            continue
        for _ in range(copies):
            j = rng.randrange(len(inputs) - 1)
            j += j >= i  # another input, never itself
            k = rng.randint(1, len(a) - 1)
            text = " ".join(a[:k] + words[j][:max_words - k])
            extra.append((x[0], text) if pair else text)
    return extra


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _encode(tokenizer, inputs: list, max_length: int, windows: int = 0) -> list[dict]:
    """Tokenized inputs (texts or pairs), unpadded until collated: each input's first window,
    then up to `windows` later windows of the inputs longer than `max_length` (of the second
    text of a pair), appended after all first windows so row i is still input i."""
    first = [x[0] if isinstance(x, tuple) else x for x in inputs]
    second = [x[1] for x in inputs] if inputs and isinstance(inputs[0], tuple) else None
    if not windows:
        enc = tokenizer(first, second, truncation=True, max_length=max_length)
        return [{k: enc[k][i] for k in enc} for i in range(len(first))]
    enc = tokenizer(first, second, truncation="only_second" if second else True, max_length=max_length,
                    return_overflowing_tokens=True, stride=0)
    keys = [k for k in enc if k != "overflow_to_sample_mapping"]
    owner = enc["overflow_to_sample_mapping"]
    heads, tails, seen = [None] * len(first), [], {}
    for row, i in enumerate(owner):
        k = seen.get(i, 0)
        seen[i] = k + 1
        item = {key: enc[key][row] for key in keys}
        if k == 0:
            heads[i] = item
        elif k <= windows:
            tails.append(item)
    return heads + tails


def _batches(rows: list[dict], order: list[int], size: int) -> list[list[int]]:
    """Batches of similar lengths (less padding), in a shuffled order."""
    by_len = sorted(order, key=lambda i: len(rows[i]["input_ids"]))
    return [by_len[i:i + size] for i in range(0, len(by_len), size)]


def _collate(rows: list[dict], idx: list[int], names: list[str]):
    import torch

    n = max(len(rows[i]["input_ids"]) for i in idx)
    out = {}
    for k in names:
        pad = 0
        out[k] = torch.tensor([rows[i][k] + [pad] * (n - len(rows[i][k])) for i in idx], dtype=torch.long)
    return out


def teacher_logits(teacher, tokenizer, inputs: list, max_length: int, names: list[str], cache: Path,
                   windows: int = 0) -> np.ndarray:
    """The teacher's logits on `inputs` and their later windows (`_encode`), cached in `cache`."""
    import torch

    if cache.is_file():
        return np.load(cache)
    rows = _encode(tokenizer, inputs, max_length, windows)
    out = np.zeros((len(rows), teacher.config.num_labels), np.float32)
    teacher.eval()
    with torch.inference_mode():
        for idx in _batches(rows, list(range(len(rows))), 64):
            out[idx] = teacher(**_collate(rows, idx, names)).logits.float().numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(cache)
    return out


def loss_fn(logits, target):
    import torch

    return torch.nn.functional.mse_loss(logits.float(), target)


def hidden_loss(student_states, teacher_states, layer_map: list[int], attention_mask):
    """Mean over the student's layers of the squared error to the teacher's hidden state at the
    mapped depth, over the real (unpadded) tokens only."""
    m = attention_mask.unsqueeze(-1).to(student_states[0].dtype)
    n = m.sum() * student_states[0].shape[-1]
    total = 0.0
    for j, t in enumerate(layer_map):
        d = (student_states[j + 1].float() - teacher_states[t].float()) * m
        total = total + (d * d).sum() / n
    return total / len(layer_map)


class Distiller:
    """Trains one student on (inputs, teacher logits) for `epochs`, within a deadline, resumable.

    Attributes:
        work: the student's work folder (state.pt, done.json).
    """

    def __init__(self, student, tokenizer, inputs: list, targets: np.ndarray, max_length: int, names: list[str],
                 work: Path, epochs: float, seed: int = 0, windows: int = 0, teacher=None,
                 layer_map: list[int] | None = None):
        import torch

        self.student, self.names, self.work, self.seed = student, names, work, seed
        # Hidden-state targets: the teacher and which of its states each student layer learns.
        self.teacher, self.layer_map = (teacher, layer_map) if teacher is not None and layer_map else (None, None)
        if self.teacher is not None:
            self.teacher.eval()
        self.rows = _encode(tokenizer, inputs, max_length, windows)
        self.targets = torch.as_tensor(targets)
        self.steps_per_epoch = (len(self.rows) + BATCH - 1) // BATCH
        self.total = max(1, int(round(epochs * self.steps_per_epoch)))
        self.opt = torch.optim.AdamW(student.parameters(), lr=LR, weight_decay=0.01)
        warm = max(1, int(WARMUP * self.total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min((s + 1) / warm, max(0.0, (self.total - s) / max(1, self.total - warm))))
        self.step = 0
        work.mkdir(parents=True, exist_ok=True)

    @property
    def state_file(self) -> Path:
        return self.work / "state.pt"

    def resume(self) -> bool:
        """Load the saved state; False when there is none."""
        import torch

        if not self.state_file.is_file():
            return False
        state = torch.load(self.state_file, weights_only=False)
        self.student.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.step = state["step"]
        log.info("resuming %s at step %d of %d", self.work.name, self.step, self.total)
        return True

    def save(self) -> None:
        import torch

        tmp = self.state_file.with_suffix(".tmp")
        torch.save({"model": self.student.state_dict(), "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict(), "step": self.step}, tmp)
        tmp.replace(self.state_file)

    def seconds_per_step(self, probe: int = 3) -> float:
        """Measured cost of a training step (for the budget), without changing the student."""
        state = {k: v.clone() for k, v in self.student.state_dict().items()}
        opt_state = self.opt.state_dict()
        t0 = time.perf_counter()
        self._train_steps(list(range(min(probe, self.steps_per_epoch))), epoch=-1)
        el = (time.perf_counter() - t0) / max(1, min(probe, self.steps_per_epoch))
        self.student.load_state_dict(state)
        self.opt.load_state_dict(opt_state)
        return el

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        batches = _batches(self.rows, list(range(len(self.rows))), BATCH)
        random.Random(self.seed + epoch).shuffle(batches)
        return batches

    def _train_steps(self, which: list[int], epoch: int, deadline: float | None = None, bar=None) -> bool:
        import torch

        batches = self._epoch_batches(max(epoch, 0))
        self.student.train()
        with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
            return self._steps(which, batches, epoch, deadline, bar)

    def _steps(self, which: list[int], batches: list, epoch: int, deadline: float | None, bar) -> bool:
        import torch

        for b in which:
            if deadline is not None and time.monotonic() > deadline:
                return False
            # Dropout draws from torch's global generator: seeded per (epoch, batch), the same
            # export makes the same student whatever ran before it, and a resumed one the same
            # as one never interrupted.
            torch.manual_seed(self.seed + STEP_SEED * max(epoch, 0) + b)
            loss = self._loss(batches[b])
            loss.backward()
            self.opt.step()
            self.opt.zero_grad()
            if epoch >= 0:
                self.sched.step()
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4f}")
        return True

    def _loss(self, idx: list[int]):
        import torch

        feeds = _collate(self.rows, idx, self.names)
        if self.teacher is None:
            return loss_fn(self.student(**feeds).logits, self.targets[idx])
        with torch.no_grad():  # not inference_mode: its tensors could not enter the student's loss
            theirs = self.teacher(**feeds, output_hidden_states=True).hidden_states
        out = self.student(**feeds, output_hidden_states=True)
        return loss_fn(out.logits, self.targets[idx]) + hidden_loss(out.hidden_states, theirs, self.layer_map,
                                                                     feeds["attention_mask"])

    def run(self, deadline: float) -> bool:
        """Train until done or `deadline` (time.monotonic()); True when every step ran."""
        from tqdm.auto import tqdm

        with tqdm(total=self.total, initial=self.step, desc=f"distilling {self.work.name}", unit="step",
                  leave=False) as bar:
            while self.step < self.total:
                epoch, at = divmod(self.step, self.steps_per_epoch)
                end = min(self.steps_per_epoch, at + (self.total - self.step))
                try:
                    finished = self._train_steps(list(range(at, end)), epoch, deadline, bar)
                except KeyboardInterrupt:
                    self.save()  # Ctrl-C mid-epoch: --resume continues from the last step taken
                    raise
                self.save()
                if not finished:
                    return False
        self.student.eval()
        return True
