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

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import BertfastError, ProviderError
from ..manifest import Manifest, load_manifest
from . import providers as P
from .batching import AGGREGATE, LONG_TEXT, Batcher, Encoded, aggregate_windows, check_texts

log = logging.getLogger(__name__)

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}

# Above this many texts, tokenization of the next chunk runs in a background thread while ONNX
# Runtime computes the current one (both release the GIL). Below it a thread costs more than it
# saves. 2048 texts at 128 tokens is ~32 batches of 8192 tokens: long enough to sort well.
PIPELINE_CHUNK = 2048


class Classifier:
    """A text classifier backed by one ONNX variant of a bertfast export.

    Build it with `Classifier.load(path)`; see `load` for the options.
    """

    def __init__(
        self,
        manifest: Manifest,
        session,
        batcher: Batcher,
        variant: str,
        device: str,
        threads: int,
        aggregate: str,
        streams: int = 1,
    ):
        self.manifest = manifest
        self.session = session
        self.batcher = batcher
        self.variant = variant
        self.device = device
        self.threads = threads
        self.aggregate = aggregate
        self.labels = manifest.labels
        self.providers = list(session.get_providers())
        self.last_stats: dict = {}
        self._output = manifest.output
        self.streams = streams
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertfast-tokenize")
        # Created here, not lazily, so concurrent callers never race to make two pools
        # (ThreadPoolExecutor starts its threads only on first use).
        self._run_pool = ThreadPoolExecutor(streams, thread_name_prefix="bertfast-run") if streams > 1 else None
        self._closed = False

    # -- construction --------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        variant: str | None = None,
        threads: int | None = None,
        long_text: str = "truncate",
        stride: int | None = None,
        aggregate: str = "mean",
        batch_tokens: int = 8192,
        max_batch_size: int = 256,
        max_length: int | None = None,
        allow_spinning: bool = True,
        streams: int = 1,
    ) -> Classifier:
        """Load an export folder written by `bertfast export`.

        Args:
            path: the export folder (holding `bertfast.json`).
            device: "cpu", "cuda" (fails if CUDA is not really usable, listing the available
                providers and the likely cause) or "auto" (CUDA if it works, else CPU; logged).
            variant: variant name from the manifest (e.g. "int8"); default: the export's
                default for the device.
            threads: CPU intra-op threads; default: the CPUs this process may use (container
                quota / affinity), not the host's core count.
            long_text: texts longer than `max_length` tokens are handled by "truncate" (keep the
                start; the default), "head-tail" (keep the first ~1/4 and last ~3/4 of the token
                budget) or "sliding-window" (classify overlapping windows, aggregate logits).
            stride: overlap in tokens between sliding windows; default max_length // 4.
            aggregate: how window logits combine into one per text: "mean" or "max".
            batch_tokens: padded tokens per batch (batch size x longest window in the batch).
            max_batch_size: most windows per batch, whatever their length.
            max_length: tokens per window incl. special tokens; default: the manifest's
                `max_length`; at most its `model_max_length`.
            allow_spinning: let ONNX Runtime threads spin between ops (lower latency; turn off
                when the cores are shared with other busy work).
            streams: batches run concurrently, each on `threads // streams` intra-op threads
                (CPU only). With 2+ streams the cores work on different batches instead of
                splitting every matrix multiply and meeting at a barrier after each op, which
                wins throughput when there are several batches and keeps working when another
                process steals a core. Batch-1 latency is unaffected (one batch = one stream).

        Returns:
            A ready Classifier.

        Raises:
            BertfastError: bad argument, unreadable export, unknown variant.
            ProviderError: CUDA requested but not usable.
        """
        P.check_device(device)
        if long_text not in LONG_TEXT:
            raise BertfastError(f"long_text must be one of {', '.join(LONG_TEXT)}; got {long_text!r}.")
        if aggregate not in AGGREGATE:
            raise BertfastError(f"aggregate must be one of {', '.join(AGGREGATE)}; got {aggregate!r}.")
        for name, value, low in (("batch_tokens", batch_tokens, 1), ("max_batch_size", max_batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise BertfastError(f"{name} must be an integer >= {low}; got {value!r}.")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise BertfastError(f"threads must be an integer >= 1 (or None for all usable CPUs); got {threads!r}.")
        if not isinstance(streams, int) or streams < 1:
            raise BertfastError(f"streams must be an integer >= 1; got {streams!r}.")
        if stride is not None and (not isinstance(stride, int) or stride < 0):
            raise BertfastError(f"stride must be an integer >= 0; got {stride!r}.")

        m = load_manifest(path)
        max_length = m.max_length if max_length is None else max_length
        if not isinstance(max_length, int) or not 2 < max_length <= m.model_max_length:
            raise BertfastError(
                f"max_length must be an integer between 3 and the model's limit {m.model_max_length}; got {max_length!r}."
            )
        if variant is not None:
            m.pick_variant("cpu", variant)  # raises with the list of variants if unknown
        from ..utils import usable_cpus

        threads = threads or usable_cpus()
        streams = min(streams, threads)
        session, device, variant = _open_session(m, device, variant, max(1, threads // streams), allow_spinning)
        if device == "cuda":
            streams = 1  # one GPU stream; concurrency there comes from batch size
        dtypes = {}
        graph_inputs = {i.name: i.type for i in session.get_inputs()}
        missing = [n for n in graph_inputs if n not in m.inputs]
        absent = [n for n in m.inputs if n not in graph_inputs]
        if missing or absent:
            raise BertfastError(
                f"export {m.folder}: manifest inputs {m.inputs} do not match the graph's {list(graph_inputs)}; "
                "re-run `bertfast export --force`."
            )
        for n in m.inputs:
            dtypes[n] = np.dtype(_ORT_INT_TYPES.get(graph_inputs[n], np.int64))
        if m.output not in [o.name for o in session.get_outputs()]:
            raise BertfastError(
                f"export {m.folder}: output {m.output!r} is not in the graph "
                f"({[o.name for o in session.get_outputs()]}); re-run `bertfast export --force`."
            )
        batcher = Batcher(
            m.tokenizer_file, m.inputs, dtypes, m.pad_token_id, max_length,
            long_text=long_text, stride=stride, batch_tokens=batch_tokens, max_batch_size=max_batch_size,
        )
        log.info("loaded %s: variant %s on %s (%s), %d threads", m.folder, variant, device, session.get_providers()[0], threads)
        return cls(m, session, batcher, variant, device, threads, aggregate, streams)

    # -- public API ----------------------------------------------------------------------

    def predict(self, texts: str | Iterable[str], top_k: int = 1):
        """Labels with scores.

        Args:
            texts: one string or an iterable of strings.
            top_k: how many labels per text, best first.

        Returns:
            For a string: {"label": str, "score": float} (top_k > 1: a list of such dicts).
            For an iterable: a list of those, in the caller's order.
        """
        if not isinstance(top_k, int) or not 1 <= top_k <= len(self.labels):
            raise BertfastError(f"top_k must be an integer between 1 and {len(self.labels)} (the number of labels); got {top_k!r}.")
        items, single = check_texts(texts)
        proba = self._proba(items)
        labels = self.labels
        if top_k == 1:
            best = proba.argmax(axis=1)
            scores = proba[np.arange(len(best)), best].tolist()
            out = [{"label": labels[b], "score": s} for b, s in zip(best.tolist(), scores)]
        else:
            top = np.argsort(-proba, axis=1, kind="stable")[:, :top_k]
            scores = np.take_along_axis(proba, top, axis=1).tolist()
            out = [[{"label": labels[b], "score": s} for b, s in zip(bs, ss)] for bs, ss in zip(top.tolist(), scores)]
        return out[0] if single else out

    def predict_proba(self, texts: str | Iterable[str]) -> np.ndarray:
        """Class probabilities, float32 array [n_texts, n_labels], in the caller's order.

        A single string gives shape [1, n_labels].
        """
        items, _ = check_texts(texts)
        return self._proba(items)

    def encode(self, texts: str | Iterable[str]) -> Encoded:
        """Tokenize, sort and batch `texts` without running the model (for timing model-only)."""
        items, _ = check_texts(texts)
        return self.batcher.encode(items)

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
        stats = _Stats()

        def next_encoded():
            for texts in it:
                t = time.perf_counter()
                items, _ = check_texts(texts)
                enc = self.batcher.encode(items)
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
                yield _softmax(logits)
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

    def _proba(self, items: list[str]) -> np.ndarray:
        if len(items) > PIPELINE_CHUNK:
            chunks = (items[i : i + PIPELINE_CHUNK] for i in range(0, len(items), PIPELINE_CHUNK))
            return np.concatenate(list(self.iter_proba(chunks)))
        self._check_open()
        t0 = time.perf_counter()
        if not items:
            self.last_stats = _Stats().as_dict(0.0)
            return np.empty((0, len(self.labels)), dtype=np.float32)
        enc = self.batcher.encode(items)
        t1 = time.perf_counter()
        proba = _softmax(self.logits_from_encoded(enc))
        stats = _Stats()
        stats.add(enc)
        stats.tokenize_s = t1 - t0
        self.last_stats = stats.as_dict(time.perf_counter() - t0)
        return proba

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.device == "cuda":
            # IO binding: inputs are copied to the GPU once and the output is allocated there,
            # instead of ORT staging every tensor through its own CPU buffers.
            b = self.session.io_binding()
            for name, arr in feeds.items():
                b.bind_cpu_input(name, arr)
            b.bind_output(self._output, "cuda")
            self.session.run_with_iobinding(b)
            out = b.copy_outputs_to_cpu()[0]
        else:
            out = self.session.run([self._output], feeds)[0]
        # fp16 variants return fp16 logits; softmax and callers want fp32.
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def _executor(self) -> ThreadPoolExecutor:
        # One long-lived worker per Classifier, made in __init__ (no race between callers);
        # ThreadPoolExecutor starts the thread only when first used.
        if self._pool is None:
            raise BertfastError("this Classifier was closed; load it again with Classifier.load(...).")
        return self._pool

    def _check_open(self) -> None:
        if self._closed:
            raise BertfastError("this Classifier was closed; load it again with Classifier.load(...).")


class _Stats:
    def __init__(self):
        self.n_texts = self.n_windows = self.real = self.padded = self.batches = 0
        self.tokenize_s = 0.0

    def add(self, enc: Encoded) -> None:
        self.n_texts += enc.n_texts
        self.n_windows += enc.n_windows
        self.real += enc.real_tokens
        self.padded += enc.padded_tokens
        self.batches += len(enc.batches)

    def as_dict(self, seconds: float) -> dict:
        return {
            "n_texts": self.n_texts,
            "n_windows": self.n_windows,
            "n_batches": self.batches,
            "real_tokens": self.real,
            "padded_tokens": self.padded,
            "padding_ratio": 0.0 if not self.padded else 1.0 - self.real / self.padded,
            "seconds": seconds,
            "tokenize_seconds": self.tokenize_s,
        }


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _open_session(m: Manifest, device: str, variant: str | None, threads: int, allow_spinning: bool):
    """Resolve device + variant and build the session. Returns (session, device, variant)."""
    if device == "auto":
        if P.cuda_candidate():
            try:
                v = _variant_for(m, "cuda", variant)
            except BertfastError as e:
                v = None
                log.info("device auto: no variant for CUDA (%s); using CPU", e)
            if v is not None:
                try:
                    sess = P.create_session(m.variant_file(v), "cuda", threads, allow_spinning)
                    log.info("device auto: using CUDA")
                    return sess, "cuda", v
                except ProviderError as e:
                    log.warning("device auto: CUDA not usable, running on CPU instead: %s", e)
        else:
            log.info("device auto: CUDA provider not available (%s); using CPU", ", ".join(P.available_providers()))
        device = "cpu"
    v = _variant_for(m, device, variant)
    return P.create_session(m.variant_file(v), device, threads, allow_spinning), device, v


def _variant_for(m: Manifest, device: str, variant: str | None) -> str:
    v = m.pick_variant(device, variant)
    devices = m.variants[v].get("devices", ["cpu", "cuda"])
    if device not in devices:
        raise ProviderError(
            f"variant {v!r} of export {m.folder} is made for {', '.join(devices)}, not {device}; "
            f"choose another variant ({', '.join(sorted(m.variants))}) or device."
        )
    return v
