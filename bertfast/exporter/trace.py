"""The tracing setup that makes transformers 4 and 5 export the classic BERT graph ORT fuses.

bertfast exports with `torch.onnx.export(dynamo=False)` (TorchScript tracing), then ONNX
Runtime's transformer optimizer fuses the graph (`optimize.fuse`). The fusions match the
*classic* BERT graph: an additive mask `(1 - mask[:, None, None, :]) * min` added to
`(q @ k^T) / sqrt(d)` before the Softmax. transformers 4.x eager attention exports exactly
that. transformers 5 does not, in two ways (`traceable` below undoes both for the duration of
one export only):

1. Its mask builder, `masking_utils.create_bidirectional_mask`, fails under tracing
   (`IndexError` in `sdpa_mask`) or skips the mask when the example has no padding.
2. Its eager attention scales with `* scaling`. ORT's attention fusion looks for the mask path
   as the first `Mul` input of the scores' `Add`, finds the scaling `Mul` instead and gives up
   ("fuse_attention: failed to match mask path"); with a `Div` it fuses.

Both are detected by feature (does the model's module import `create_bidirectional_mask`, does
transformers have `AttentionInterface`), not by version string, so a 4.x release that adopted
one of them is handled too.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys

log = logging.getLogger(__name__)

_ATTN_NAME = "bertfast_export"
_MASK_FN = "create_bidirectional_mask"


def _additive_mask(config=None, inputs_embeds=None, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
    """Stand-in for `create_bidirectional_mask` while tracing: BERT's classic additive mask.

    (batch, 1, 1, seq), 0 where attended and the dtype's minimum where padded: the exact
    Unsqueeze/Cast/Sub/Mul chain ORT's attention fusion matches as the mask path.
    """
    import torch

    if attention_mask is None or attention_mask.dim() == 4:
        return attention_mask  # no mask, or an already prepared one (returned as-is upstream too)
    ref = encoder_hidden_states if encoder_hidden_states is not None else inputs_embeds
    dtype = ref.dtype if ref is not None else torch.float32
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


def _div_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention with the 1/sqrt(d) scale as a `Div` after `q @ k^T` (see the module docstring).

    Same arithmetic as transformers' eager attention; a non-default `scaling` keeps its `Mul`
    (still correct, it only will not fuse).
    """
    import torch

    d = query.shape[-1]
    scores = torch.matmul(query, key.transpose(-1, -2))
    if scaling is None or math.isclose(scaling, d ** -0.5, rel_tol=1e-6):
        scores = scores / math.sqrt(d)
    else:
        scores = scores * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1)
    if kwargs.get("head_mask") is not None:
        weights = weights * kwargs["head_mask"]
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _mask_modules(model) -> list:
    """Loaded transformers model modules that imported `create_bidirectional_mask` (transformers 5)."""
    try:
        from transformers import masking_utils
    except ImportError:  # transformers 4.x before masking_utils existed: nothing to patch
        return []
    original = getattr(masking_utils, _MASK_FN, None)
    if original is None:
        return []
    found = []
    for name, mod in list(sys.modules.items()):
        # vars(), not hasattr(): the `transformers.models.*` packages are lazy modules, and
        # probing them with getattr would import every model transformers ships.
        if name.startswith("transformers.models.") and vars(mod).get(_MASK_FN) is original:
            found.append(mod)
    return found


@contextlib.contextmanager
def traceable(model):
    """Make `model` export as the classic BERT graph ORT fuses, for the duration of the block.

    On transformers 5 this (1) replaces `create_bidirectional_mask` in every loaded
    `transformers.models.*` module that imported it with `_additive_mask`, and (2) registers
    `_div_attention` with `transformers.AttentionInterface` and switches the model to it (when
    the model supports switching). On transformers 4.x eager attention already exports the
    classic graph and nothing is changed. Everything is restored in `finally`, so the model
    (and any other model in the process) computes as before once the block ends; PyTorch
    numerics inside the block are the same up to float rounding.
    """
    patched = [(mod, vars(mod)[_MASK_FN]) for mod in _mask_modules(model)]
    previous_attn = None
    registered = False
    try:
        for mod, _ in patched:
            setattr(mod, _MASK_FN, _additive_mask)
        if patched:
            import transformers

            interface = getattr(transformers, "AttentionInterface", None)
            can_set = getattr(model, "_can_set_attn_implementation", None)
            if interface is not None and can_set is not None and can_set():
                registered = _ATTN_NAME not in interface._global_mapping
                interface.register(_ATTN_NAME, _div_attention)
                previous_attn = model.config._attn_implementation
                model.set_attn_implementation(_ATTN_NAME)
            log.debug("tracing with the classic additive mask (%d module(s) patched), attention %s",
                      len(patched), _ATTN_NAME if previous_attn else model.config._attn_implementation)
        yield model
    finally:
        for mod, original in patched:
            setattr(mod, _MASK_FN, original)
        if previous_attn is not None:
            model.set_attn_implementation(previous_attn)
        if registered:
            import transformers

            transformers.AttentionInterface._global_mapping.pop(_ATTN_NAME, None)
