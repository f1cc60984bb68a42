"""`Classifier`: load an export folder and classify texts as fast as the hardware allows.

Imports only onnxruntime, tokenizers and numpy (never torch or transformers), so a production
image needs only the base install.

Thread safety: `predict`, `predict_proba`, `encode` and `logits_from_encoded` may be called from
several threads at once on one Classifier (ONNX Runtime sessions and the Rust tokenizer are
thread-safe, and no per-call state is shared). `last_stats` then describes whichever call
finished last. Concurrent calls share the CPU threads of one session; for throughput, one caller
with large batches beats many callers with small ones.

Empty strings are classified like any other text (the model sees only [CLS] [SEP]).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import tasks as _tasks
from ..errors import BertfastError, InferenceError  # noqa: F401  (InferenceError re-exported for callers)
from ..manifest import Manifest, ManifestError, load_manifest
from .batching import Batcher, Encoded, check_pairs, check_texts
from .options import DEFAULT_BATCH_TOKENS, RuntimeOptions
from .providers import Provider
from .session import check_output_width, input_dtypes, label_mismatch, open_session
from .stats import Stats
from .tokens import aggregate_windows

log = logging.getLogger(__name__)

# Above this many texts, tokenization of the next chunk runs in a background thread while ONNX
# Runtime computes the current one (both release the GIL). Below it a thread costs more than it
# saves. 2048 texts at 128 tokens is ~32 batches of 8192 tokens: long enough to sort well.
PIPELINE_CHUNK = 2048


@functools.cache
def _ort_errors() -> tuple[type[Exception], ...]:
    """The exception types a session's run may raise: ORT's own (`Fail`, `InvalidArgument`,
    `RuntimeException`, ... all plain `Exception` subclasses), RuntimeError and MemoryError.
    KeyboardInterrupt is a BaseException and is never among them."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:  # pragma: no cover - onnxruntime is a base dependency
        found = []
    else:
        found = [v for v in vars(state).values()
                 if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == state.__name__]
    return (*found, RuntimeError, MemoryError)


def _window(m: Manifest, opts: RuntimeOptions, provider: str, variant: str) -> tuple[int, str]:
    """(max_length, long_text): the caller's, else the window the export's search chose for
    this variant on this provider (the manifest's `window`; only when the caller set neither,
    since a window is a length and a mode validated together), else the export's max_length."""
    chosen = (m.window or {}).get(provider) or {}
    if opts.max_length is None and opts.long_text is None and chosen.get("variant") == variant:
        return int(chosen["max_length"]), chosen["long_text"]
    return (m.max_length if opts.max_length is None else opts.max_length), opts.long_text or "truncate"


class Classifier:
    """A text classifier backed by one ONNX variant of a bertfast export.

    Build it with `Classifier.load(path)`; see `load` for the options.
    """

    def __init__(self, manifest: Manifest, session, batcher: Batcher, options: RuntimeOptions, provider: Provider):
        self.manifest = manifest
        self.session = session
        self.batcher = batcher
        self.options = options  # resolved: the device, variant, threads, ... actually in use
        self.variant = options.variant
        self.device = options.device
        self.threads = options.threads
        self.aggregate = options.aggregate
        self.streams = options.streams
        self.labels = manifest.labels
        self.task = _tasks.get(manifest.task_name)  # single_label, multi_label or regression
        self.pair = manifest.pair  # True: inputs are [text, text_pair]
        self.activation = manifest.activation
        self.thresholds = manifest.thresholds
        # Decided once, as TEI decides Classifier vs Reranker at load: whether (and by which
        # class) this export ranks candidates.
        self.positive, self.rerank_refusal = _tasks.ranking.rerank_rule(
            manifest.labels, manifest.pair, self.task, manifest.positive_label, str(manifest.folder))
        self.providers = list(session.get_providers())
        self.last_stats: dict = {}
        self._output = manifest.output
        self._provider = provider
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertfast-tokenize")
        # Created here, not lazily, so concurrent callers never race to make two pools
        # (ThreadPoolExecutor starts its threads only on first use).
        self._run_pool = (
            ThreadPoolExecutor(self.streams, thread_name_prefix="bertfast-run") if self.streams > 1 else None
        )
        self._closed = False

    # -- construction --------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, options: RuntimeOptions | None = None, **overrides) -> Classifier:
        """Load an export folder written by `bertfast export`.

        Args:
            path: the export folder (holding `bertfast.json`).
            options: every inference setting (device, variant, threads, long_text, stride,
                aggregate, batch_tokens, max_batch_size, max_length, allow_spinning, streams);
                see `RuntimeOptions` for each. Default: `RuntimeOptions()`.
            **overrides: any of those settings by keyword (`device="cpu"`, `threads=2`); they
                win over `options`. `device="cuda"`/`"tensorrt"` fails if that provider is not
                really usable (listing the available providers and the likely cause); "auto"
                tries the GPU providers and falls back to the CPU, logged. `max_length` is at
                most the export's `model_max_length`.

        Returns:
            A ready Classifier; `clf.options` holds the settings in use (device and variant
            resolved, threads and max_length filled in).

        Raises:
            BertfastError: bad setting (the message names the argument), unreadable export,
                unknown or failed variant.
            ProviderError: a GPU provider requested by name but not usable.
        """
        if options is not None and not isinstance(options, RuntimeOptions):
            raise BertfastError(
                f"options must be a RuntimeOptions (pass single settings by keyword, e.g. device='cpu'); "
                f"got {type(options).__name__}."
            )
        opts = (options or RuntimeOptions()).replace(**overrides)
        m = load_manifest(path)
        if opts.max_length is not None and opts.max_length > m.model_max_length:
            raise BertfastError(
                f"max_length must be an integer between 3 and the model's limit {m.model_max_length}; "
                f"got {opts.max_length!r}."
            )
        from ..utils import usable_cpus

        threads = opts.threads or usable_cpus()
        streams = min(opts.streams or 1, threads)
        session, provider, variant = open_session(
            m, opts.device, opts.variant, max(1, threads // streams), opts.allow_spinning
        )
        check_output_width(m, session)
        # The caller's budget, else the one the export measured fastest for this variant here.
        measured = (m.batching or {}).get(provider.name) or {}
        batch_tokens = opts.batch_tokens or (measured.get("batch_tokens") if measured.get("variant") == variant
                                             else None) or DEFAULT_BATCH_TOKENS
        max_length, long_text = _window(m, opts, provider.name, variant)
        if provider.gpu:
            streams = 1  # one GPU stream; concurrency there comes from batch size
        batcher = Batcher(
            m.tokenizer_file, m.inputs, input_dtypes(m, session), m.pad_token_id, max_length,
            long_text=long_text, stride=opts.stride, batch_tokens=batch_tokens,
            max_batch_size=opts.max_batch_size, pair_truncation=opts.pair_truncation or m.pair_truncation,
            min_batch_tokens=provider.min_batch_tokens,
        )
        opts = opts.replace(device=provider.name, variant=variant, threads=threads, streams=streams,
                            max_length=max_length, long_text=long_text, stride=batcher.stride, batch_tokens=batch_tokens,
                            pair_truncation=batcher.pair_truncation if m.pair else opts.pair_truncation)
        # debug: an export loads its variants dozens of times while validating them (temporary paths)
        log.debug("loaded %s: variant %s on %s (%s), %d threads", m.folder, variant, provider.name,
                 session.get_providers()[0], threads)
        return cls(m, session, batcher, opts, provider)

    # -- public API ----------------------------------------------------------------------

    def predict(self, texts, top_k: int = 1):
        """What the model says about each input, in the export's task's terms.

        Args:
            texts: one string or an iterable of strings; for a pair export, one pair
                `[text, text_pair]` or an iterable of pairs.
            top_k: single-label exports: how many labels per input, best first.

        Returns:
            Per input (a list of them, in the caller's order, for an iterable):
            single_label: {"label": str, "score": float} (top_k > 1: a list of such dicts);
            multi_label: {"labels": [labels at or over their threshold], "scores": {label: float}};
            regression: {"score": float}.
        """
        self.task.check_top_k(top_k, "this export", "top_k")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= len(self.labels):
            raise BertfastError(f"top_k must be an integer between 1 and {len(self.labels)} (the number of labels); got {top_k!r}.")
        items, single = self._inputs(texts)
        out = self.task.outputs(self._proba(items), self.labels, self.thresholds, top_k)
        return out[0] if single else out

    def predict_proba(self, texts) -> np.ndarray:
        """Scores, float32 array [n_inputs, n_outputs], in the caller's order: class
        probabilities (softmax) for single-label, per-label probabilities (sigmoid) for
        multi-label, the score for regression. A single input gives shape [1, n_outputs].
        """
        items, _ = self._inputs(texts)
        return self._proba(items)

    scores = predict_proba

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None, return_documents: bool = True):
        """Documents ordered by relevance to `query`, best first (cross-encoder reranking).

        Needs a pair export with one score (regression / one-logit cross-encoder: the score, or
        its sigmoid as trained) or two classes (score = P(last class), the "relevant" one).

        Returns:
            [{"index": position in `documents`, "score": float, "document": str}, ...]
            (`document` only with return_documents), at most `top_k` of them.
        """
        if self.rerank_refusal is not None:
            raise BertfastError(self.rerank_refusal)
        if not isinstance(query, str):
            raise BertfastError(f"query must be a string; got {type(query).__name__}.")
        if isinstance(documents, str) or documents is None:
            raise BertfastError("documents must be a list of strings (one per candidate), not a single string.")
        docs = list(documents)
        if not docs:
            raise BertfastError("documents is empty; pass at least one candidate document to rerank.")
        for i, d in enumerate(docs):
            if not isinstance(d, str):
                raise BertfastError(f"documents[{i}] is {type(d).__name__}, not a string; convert or drop it.")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise BertfastError(f"top_k must be a positive integer or None (all documents); got {top_k!r}.")
        rel = self.task.relevance(self._proba([(query, d) for d in docs]), self.positive)
        order = np.argsort(-rel, kind="stable")[: top_k or len(docs)]
        return [{"index": int(i), "score": float(rel[i]), **({"document": docs[i]} if return_documents else {})}
                for i in order]

    def encode(self, texts) -> Encoded:
        """Tokenize, sort and batch inputs without running the model (for timing model-only)."""
        items, _ = self._inputs(texts)
        return self._encode(items)

    def logits_from_encoded(self, enc: Encoded) -> np.ndarray:
        """Run the model on a prior `encode` result: logits [n_texts, n_labels] float32, caller order."""
        self._check_open()
        if enc.n_windows == 1:  # batch-1 path: no scatter
            (_, feeds), = enc.batches
            return self._run(feeds)
        if not enc.batches:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        win = np.empty((enc.n_windows, len(self.labels)), dtype=np.float32)
        if self.streams > 1 and len(enc.batches) > 1:
            # ORT's Run is thread-safe; each call runs on its caller thread when intra-op = 1.
            outs = self._run_pool.map(lambda b: self._run(b[1]), enc.batches)
            for (idx, _), out in zip(enc.batches, outs):
                win[idx] = out
        else:
            for idx, feeds in enc.batches:
                win[idx] = self._run(feeds)
        return aggregate_windows(win, enc.window_starts, self.aggregate)

    def iter_proba(self, chunks: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """Probabilities per chunk of texts, with the next chunk tokenized while this one runs.

        The chunks iterable is consumed from a background thread, one chunk ahead.
        `last_stats` accumulates over all chunks.
        """
        self._check_open()
        it = iter(chunks)
        stats = Stats()

        def next_encoded():
            for texts in it:
                t = time.perf_counter()
                items, _ = self._inputs(texts)
                enc = self._encode(items)
                stats.tokenize_s += time.perf_counter() - t
                return enc
            return None

        pool = self._executor()
        t0 = time.perf_counter()
        fut = pool.submit(next_encoded)
        try:
            while True:
                enc = fut.result()
                if enc is None:
                    break
                fut = pool.submit(next_encoded)
                logits = self.logits_from_encoded(enc)
                stats.add(enc)
                yield _tasks.activate(logits, self.activation)
        finally:
            fut.cancel()
            self.last_stats = stats.as_dict(time.perf_counter() - t0)

    def close(self) -> None:
        """Release the ONNX Runtime session and the background tokenizer thread."""
        for pool in (self._pool, self._run_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._run_pool = None
        self.session = None
        self._closed = True

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Classifier({str(self.manifest.folder)!r}, variant={self.variant!r}, device={self.device!r}, "
            f"threads={self.threads}, labels={self.labels})"
        )

    # -- internals -----------------------------------------------------------------------

    def _inputs(self, inputs) -> tuple[list, bool]:
        """The caller's inputs checked for this export's kind: texts, or [text, text_pair] pairs."""
        if self.pair:
            if isinstance(inputs, str):
                raise BertfastError(
                    "this export classifies text pairs; pass [text, text_pair] (or a list of pairs), not one string."
                )
            return check_pairs(inputs, "texts")
        if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], (list, tuple)):
            raise BertfastError(
                "texts[0] is a pair, but this export classifies single texts; pass strings (a pair model is "
                "trained with --text-pair-column)."
            )
        return check_texts(inputs)

    def _encode(self, items: list) -> Encoded:
        return self.batcher.encode_pairs(items) if self.pair else self.batcher.encode(items)


    def _proba(self, items: list) -> np.ndarray:
        if len(items) > PIPELINE_CHUNK:
            chunks = (items[i : i + PIPELINE_CHUNK] for i in range(0, len(items), PIPELINE_CHUNK))
            return np.concatenate(list(self.iter_proba(chunks)))
        self._check_open()
        t0 = time.perf_counter()
        if not items:
            self.last_stats = Stats().as_dict(0.0)
            return np.empty((0, len(self.labels)), dtype=np.float32)
        enc = self._encode(items)
        t1 = time.perf_counter()
        proba = _tasks.activate(self.logits_from_encoded(enc), self.activation)
        stats = Stats()
        stats.add(enc)
        stats.tokenize_s = t1 - t0
        self.last_stats = stats.as_dict(time.perf_counter() - t0)
        return proba

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        try:
            if self._provider.io_binding:
                # Inputs are copied to the device once and the output is allocated there, instead of
                # ORT staging every tensor through its own CPU buffers.
                b = self.session.io_binding()
                for name, arr in feeds.items():
                    b.bind_cpu_input(name, arr)
                b.bind_output(self._output, self._provider.memory)
                self.session.run_with_iobinding(b)
                out = b.copy_outputs_to_cpu()[0]
            else:
                out = self.session.run([self._output], feeds)[0]
        except _ort_errors() as e:
            raise InferenceError(self._failure(feeds, e)) from e
        if out.ndim != 2 or out.shape[1] != len(self.labels):
            # The graph's width was dynamic at load (`check_output_width`): this is the first look at it.
            raise ManifestError(label_mismatch(self.manifest, out.shape[-1] if out.ndim else 0))
        # fp16 variants return fp16 logits; softmax and callers want fp32.
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def _failure(self, feeds: dict[str, np.ndarray], e: Exception) -> str:
        """One line: which variant failed on what batch, ORT's reason, and what to try."""
        rows, cols = feeds["input_ids"].shape
        reason = " ".join(str(e).split())[:300] or "no message"
        return (
            f"ONNX Runtime failed running variant {self.variant!r} on {self.device} for a batch of {rows} x {cols} "
            f"tokens ({type(e).__name__}: {reason}). Try smaller batches (--batch-tokens, now {self.batcher.batch_tokens}; "
            f"--max-batch-size, now {self.batcher.max_batch_size}), another --variant, or re-run "
            "`bertfast export --force` if the variant file is damaged."
        )

    def _executor(self) -> ThreadPoolExecutor:
        # One long-lived worker per Classifier, made in __init__ (no race between callers);
        # ThreadPoolExecutor starts the thread only when first used.
        if self._pool is None:
            raise BertfastError("this Classifier was closed; load it again with Classifier.load(...).")
        return self._pool

    def _check_open(self) -> None:
        if self._closed:
            raise BertfastError("this Classifier was closed; load it again with Classifier.load(...).")
