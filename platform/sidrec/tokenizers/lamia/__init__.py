"""LAMIA: multi-aspect item palettes as semantic IDs (Liu et al., "Learning
Multi-Aspect Item Palette: A Semantic Tokenization Framework for Generative
Recommendation", arXiv 2409.07276, §4.2.1–4.2.4, §5.4).

A palette model reads an item's text (content block) and writes L learnable
palette tokens (LaP); their outputs, the item palette, replace L placeholder
tokens (LdP) in a second pass from which a task block regenerates each item
attribute. A hierarchical attention mask makes the palette the only path from
content to answer. Two hinge losses keep the L vectors of an item apart and
the items apart at each position. PCA + K-Means per position turns palettes
into L parallel codes.

Backbones: any HF decoder-only LM with LoRA (`lamia_opt`, the paper's OPT-350M)
or the packaged MiniLM encoder with a small causal decoder (`lamia_minilm*`,
for CPU machines without LLM weights).

    from sidrec.tokenizers.lamia import lamia_minilm_small, run_lamia
    result = run_lamia(lamia_minilm_small(), TokenizeRequest(dataset="beauty", artifact_root=root))
"""

from sidrec.tokenizers.lamia._mask import LAMIA_CROSS, block_mask
from sidrec.tokenizers.lamia.config import (
    LamiaConfig,
    lamia_minilm,
    lamia_minilm_small,
    lamia_opt,
    with_overrides,
)
from sidrec.tokenizers.lamia.encoder import EncoderBackbone, EncoderPalette, encoder_palette
from sidrec.tokenizers.lamia.losses import (
    generative_loss,
    inter_palette_hinge,
    intra_palette_hinge,
    lamia_loss,
)
from sidrec.tokenizers.lamia.palette import DecoderBackbone, DecoderPalette, decoder_palette
from sidrec.tokenizers.lamia.pipeline import backbone_name, run_lamia
from sidrec.tokenizers.lamia.quantize import PaletteQuantizer, fit_quantizer
from sidrec.tokenizers.lamia.tasks import ItemAttributes, item_attributes, sample_tasks
from sidrec.tokenizers.lamia.train import build_model, compute_palettes, train_loop

__all__ = [
    "LAMIA_CROSS",
    "DecoderBackbone",
    "DecoderPalette",
    "EncoderBackbone",
    "EncoderPalette",
    "ItemAttributes",
    "LamiaConfig",
    "PaletteQuantizer",
    "backbone_name",
    "block_mask",
    "build_model",
    "compute_palettes",
    "decoder_palette",
    "encoder_palette",
    "fit_quantizer",
    "generative_loss",
    "inter_palette_hinge",
    "intra_palette_hinge",
    "item_attributes",
    "lamia_loss",
    "lamia_minilm",
    "lamia_minilm_small",
    "lamia_opt",
    "run_lamia",
    "sample_tasks",
    "train_loop",
    "with_overrides",
]
