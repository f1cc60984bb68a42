"""Model families: what bertfast knows about each encoder architecture, one entry per family.

Export (ONNX inputs, ORT fusion), training (which parameters are the new head), quantization
(which nodes are the head), the runtime (position limit) and the benchmark's roofline (layer
count, widths) all read this table. Values are read from a Hugging Face config given as a dict
(`config.json`) or a `PretrainedConfig`.

A family not in the table takes `GENERIC`: BERT's key names with every known alias tried, the
ORT optimizer's "bert" patterns, and inputs taken from the exported graph itself. Using it is
logged and recorded in the manifest (`source.family`), never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """One encoder family.

    Attributes:
        model_type: the config's `model_type` ("bert", "distilbert", ...); "generic" for the fallback.
        ort_model_type: `model_type` for ONNX Runtime's transformer optimizer (its BERT fusions
            cover every encoder here).
        layers, heads, hidden, intermediate: config keys, first one present wins.
        inputs: graph inputs the family takes (`token_type_ids` only where segments exist).
        position_offset: positions reserved before the first token (RoBERTa-style models count
            from padding_idx + 1, so `max_position_embeddings - (pad_token_id + 1)` are usable).
        head_params: parameter-name prefixes of the classification head (trained at --head-lr,
            kept in fp32 by mixed int8).
        fuses_embeddings: ORT fuses its embeddings into EmbedLayerNormalization.
        encoder_layers: attribute path from the sequence-classification model to its list of
            encoder layers (None: layers cannot be dropped, e.g. ALBERT shares one layer's
            weights); read by `exporter/students.py` to build smaller students.
        ffn: the feed-forward pair inside one encoder layer (in: hidden -> intermediate, out:
            intermediate -> hidden), whose neurons a student may prune.
    """

    model_type: str
    ort_model_type: str = "bert"
    layers: tuple[str, ...] = ("num_hidden_layers",)
    heads: tuple[str, ...] = ("num_attention_heads",)
    hidden: tuple[str, ...] = ("hidden_size",)
    intermediate: tuple[str, ...] = ("intermediate_size",)
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids")
    position_offset: str | None = None  # config key whose value + 1 positions are reserved
    head_params: tuple[str, ...] = ("classifier", "pooler", "bert.pooler")
    fuses_embeddings: bool = True
    encoder_layers: str | None = "bert.encoder.layer"
    ffn: tuple[str, str] = ("intermediate.dense", "output.dense")

    def get(self, config, what: str) -> int:
        """The integer value of `what` ("layers", "heads", "hidden", "intermediate") in `config`."""
        for key in getattr(self, what):
            value = _value(config, key)
            if value is not None:
                return int(value)
        from .errors import ModelError

        raise ModelError(
            f"the {self.model_type} config has none of {', '.join(getattr(self, what))} ({what}); "
            "is this a transformer encoder checkpoint?"
        )

    def dims(self, config) -> dict[str, int]:
        """layers, heads, hidden and intermediate sizes of `config`."""
        return {w: self.get(config, w) for w in ("layers", "heads", "hidden", "intermediate")}

    def position_limit(self, config) -> int:
        """Token positions the model can encode (`max_position_embeddings` minus reserved ones)."""
        n = int(_value(config, "max_position_embeddings") or 512)
        if self.position_offset:
            n -= int(_value(config, self.position_offset) or 1) + 1
        return n

    def is_head(self, param_name: str) -> bool:
        """Whether a parameter belongs to the classification head (or a pooler)."""
        return param_name.startswith(self.head_params) or ".pooler." in param_name

    def check_inputs(self, graph_inputs: list[str]) -> list[str]:
        """The graph's own inputs (authoritative); a mismatch with the table is logged, not fatal."""
        if self is not GENERIC and set(graph_inputs) != set(self.inputs):
            log.warning("the exported %s graph takes %s, the family table says %s; using the graph's inputs "
                        "(update bertfast/families.py)", self.model_type, list(graph_inputs), list(self.inputs))
        return list(graph_inputs)


# RoBERTa computes position ids from input_ids (a cumsum past padding_idx), a subgraph ORT's
# EmbedLayerNormalization fusion does not match: its attention fuses, its embeddings do not.
_ROBERTA = dict(inputs=("input_ids", "attention_mask"), position_offset="pad_token_id",
                head_params=("classifier", "pooler", "roberta.pooler"), fuses_embeddings=False,
                encoder_layers="roberta.encoder.layer")

# The table. A new family is one row.
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("bert"),
    Family("roberta", **_ROBERTA),
    Family("xlm-roberta", **_ROBERTA),
    Family("camembert", **_ROBERTA),
    Family("electra", head_params=("classifier",), encoder_layers="electra.encoder.layer"),
    Family("distilbert", layers=("n_layers",), heads=("n_heads",), hidden=("dim",), intermediate=("hidden_dim",),
           inputs=("input_ids", "attention_mask"), head_params=("classifier", "pre_classifier"),
           encoder_layers="distilbert.transformer.layer", ffn=("ffn.lin1", "ffn.lin2")),
    # MPNet adds a relative-position bias to the attention scores, which ORT's BERT attention
    # fusion does not match: it gets SkipLayerNormalization/Gelu fusions only.
    Family("mpnet", inputs=("input_ids", "attention_mask"), position_offset="pad_token_id",
           head_params=("classifier",), encoder_layers="mpnet.encoder.layer"),
    Family("albert", head_params=("classifier", "albert.pooler"), encoder_layers=None),
    # ORT has no fusion for Longformer's sliding-window attention; the row gives its position limit.
    Family("longformer", inputs=("input_ids", "attention_mask"), position_offset="pad_token_id",
           head_params=("classifier",), fuses_embeddings=False, encoder_layers="longformer.encoder.layer"),
)}

# Unknown families: every alias of each key, inputs from the graph, no embedding fusion assumed.
GENERIC = Family(
    "generic",
    layers=("num_hidden_layers", "n_layers", "num_layers"),
    heads=("num_attention_heads", "n_heads", "num_heads"),
    hidden=("hidden_size", "dim", "d_model"),
    intermediate=("intermediate_size", "hidden_dim", "ffn_dim"),
    head_params=("classifier", "pre_classifier", "pooler", "score"),
    fuses_embeddings=False,
    encoder_layers=None,
)


_WARNED: set[str] = set()


def family_of(config) -> Family:
    """The family entry for a config (dict or PretrainedConfig); `GENERIC` (logged) if unknown."""
    model_type = str(_value(config, "model_type") or "")
    fam = FAMILIES.get(model_type)
    if fam is None:
        if model_type not in _WARNED:
            _WARNED.add(model_type)
            log.warning("model_type %r is not in bertfast's family table (%s); using the generic path "
                        "(BERT-style fusion patterns, inputs from the graph)", model_type or "?", ", ".join(FAMILIES))
        return GENERIC
    return fam


def _value(config, key: str):
    if isinstance(config, dict):
        return config.get(key)
    return getattr(config, key, None)
