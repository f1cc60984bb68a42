"""The rows training works on: labeled texts (with their second texts for pair tasks) and the
train / validation / test splits made of them.

Their own module, below the readers (`data.py`) and the built-in datasets (`builtin_data.py`),
so both can build them without importing each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import tasks


@dataclass
class LabeledTexts:
    """Parallel lists of texts, their labels and (pair tasks) their second texts.

    `labels` per `task` (see `bertfast.training.labels`): str (single_label), list[str] (multi_label),
    float (regression); None entries when read without labels.
    """

    texts: list[str]
    labels: list
    pairs: list[str] | None = None
    task: str = "single_label"

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return tasks.get(self.task).counts(self.labels)

    def inputs(self) -> list:
        """What a Classifier takes: the texts, or (text, text_pair) tuples."""
        return self.texts if self.pairs is None else list(zip(self.texts, self.pairs))

    def take(self, idx) -> LabeledTexts:
        return LabeledTexts([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                            None if self.pairs is None else [self.pairs[i] for i in idx], self.task)

    def groups(self) -> list[int] | None:
        """A query id per row for pair data whose first texts repeat (reranking), else None."""
        if self.pairs is None:
            return None
        ids: dict[str, int] = {}
        out = [ids.setdefault(t, len(ids)) for t in self.texts]
        return out if len(ids) < len(out) else None

    def to_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, (t, y) in enumerate(zip(self.texts, self.labels)):
                row = {"text": t, "text_pair": self.pairs[i]} if self.pairs is not None else {"text": t}
                f.write(json.dumps({**row, "label": y}, ensure_ascii=False) + "\n")


@dataclass
class Splits:
    """Train / validation / test splits plus the label set (order = class ids)."""

    train: LabeledTexts
    validation: LabeledTexts
    test: LabeledTexts
    label_names: list[str]
    source: str
    split_note: str
    task: str = "single_label"
    pair: bool = False

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.label_names)}
