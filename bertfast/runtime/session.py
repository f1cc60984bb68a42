"""Which variant of an export runs on which execution provider, as one checked session.

`open_session` is the one place that turns a manifest plus `device`/`variant` settings into a
running ONNX Runtime session: it picks the variant (never one that failed to build), checks it
is made for the provider, applies the `device="auto"` policy from the provider table
(`auto_order`: every GPU provider compiled in, then the CPU; each fallback logged) and checks
that the graph's inputs and output are the ones the manifest promises.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import BertfastError, ProviderError
from ..manifest import Manifest, ManifestError
from .providers import PROVIDERS, Provider, auto_order, available_providers, create_session, provider

log = logging.getLogger(__name__)

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def variant_devices(spec: dict) -> list[str]:
    """The providers a manifest variant runs on: its `devices`, else those that take its precision."""
    if spec.get("devices"):
        return list(spec["devices"])
    precision = spec.get("precision", "fp32")
    return [p.name for p in PROVIDERS.values() if precision in p.precisions]


def variant_for(m: Manifest, device: str, variant: str | None = None) -> str:
    """The variant to run on provider `device`: the one asked for, else the export's default.

    `Manifest.pick_variant` never returns a variant that failed to build (`"status": "failed"`,
    no file); asking for one by name is an error giving the reason it failed.

    Raises:
        BertfastError: unknown or failed variant, or none for `device`.
        ProviderError: the variant asked for is not made for `device`.
    """
    name = m.pick_variant(device, variant)
    devices = variant_devices(m.variants[name])
    if device not in devices:
        others = ", ".join(sorted(n for n in m.variants if m.usable(n)))
        raise ProviderError(
            f"variant {name!r} of export {m.folder} is made for {', '.join(devices)}, not {device}; "
            f"choose another variant ({others}) or device."
        )
    return name


def open_session(
    m: Manifest, device: str, variant: str | None, threads: int, allow_spinning: bool = True
) -> tuple[object, Provider, str]:
    """Resolve `device` (a `DEVICES` name) and `variant`, and build the session.

    `device="auto"` tries each GPU provider of `auto_order()` with a variant made for it and
    logs why it moves on; the CPU comes last. A provider asked for by name never falls back.

    Returns:
        (session, Provider, variant name).
    """
    if variant is not None:
        m.pick_variant("cpu", variant)  # an unknown or failed variant fails here, before any session
    if device == "auto":
        order = auto_order()
        for p in order:
            if not p.gpu:
                break
            try:
                v = variant_for(m, p.name, variant)
            except BertfastError as e:
                log.info("device auto: no variant for %s (%s); trying the next provider", p.title, e)
                continue
            try:
                sess = create_session(m.variant_file(v), p.name, threads, allow_spinning)
            except ProviderError as e:
                log.warning("device auto: %s not usable, trying the next provider: %s", p.title, e)
                continue
            log.info("device auto: using %s", p.title)
            return sess, p, v
        cpu = next(p for p in order if not p.gpu)
        log.info("device auto: no GPU provider usable (available: %s); using %s",
                 ", ".join(available_providers()), cpu.title)
        device = cpu.name
    p = provider(device)
    v = variant_for(m, p.name, variant)
    return create_session(m.variant_file(v), p.name, threads, allow_spinning), p, v


def input_dtypes(m: Manifest, session) -> dict[str, np.dtype]:
    """The integer dtype of each graph input, after checking the graph matches the manifest."""
    graph_inputs = {i.name: i.type for i in session.get_inputs()}
    if sorted(graph_inputs) != sorted(m.inputs):
        raise BertfastError(
            f"export {m.folder}: manifest inputs {m.inputs} do not match the graph's {list(graph_inputs)}; "
            "re-run `bertfast export --force`."
        )
    outputs = [o.name for o in session.get_outputs()]
    if m.output not in outputs:
        raise BertfastError(
            f"export {m.folder}: output {m.output!r} is not in the graph ({outputs}); "
            "re-run `bertfast export --force`."
        )
    return {n: np.dtype(_ORT_INT_TYPES.get(graph_inputs[n], np.int64)) for n in m.inputs}


def check_output_width(m: Manifest, session) -> None:
    """Check the graph's output is [batch, len(id2label)] where its shape says so statically.

    A manifest with more labels than the model has scores would name classes the model never
    scores (and one with fewer fails later with an IndexError); the exporter writes both from
    one config, so a mismatch means a hand edit or a mixed-up folder. A dynamic width is
    checked on the first run instead (`Classifier._run`).

    Raises:
        ManifestError: the output's rank or width does not match `id2label`.
    """
    out = next((o for o in session.get_outputs() if o.name == m.output), None)
    shape = getattr(out, "shape", None)
    if not isinstance(shape, (list, tuple)) or not shape:
        return  # rank unknown: checked on the first run
    if len(shape) != 2:
        raise ManifestError(
            f"export {m.folder}: output {m.output!r} has shape {list(shape)}, not [batch, labels]; "
            "re-run `bertfast export --force`."
        )
    width = shape[-1]
    if isinstance(width, int) and width != len(m.id2label):
        raise ManifestError(label_mismatch(m, width))


def label_mismatch(m: Manifest, width: int) -> str:
    return (f"export {m.folder}: `id2label` in bertfast.json has {len(m.id2label)} labels but the model "
            f"outputs {width} scores per text; re-run `bertfast export --force` (or restore the original "
            "bertfast.json).")
