"""Recommenders. Every model ranks the full catalog or decodes valid SIDs."""

from sidrec.models.bundle import Recommender, load_bundle, save_bundle
from sidrec.models.h2rec import H2Rec, H2RecConfig, h2rec, h2rec_beauty
from sidrec.models.sasrec import SASRec, SASRecConfig, sasrec, sasrec_beauty
from sidrec.models.tiger import (
    Tiger,
    TigerConfig,
    hidvae_recommender,
    tiger,
    tiger_cpu,
    tiger_small,
)

__all__ = [
    "H2Rec",
    "H2RecConfig",
    "Recommender",
    "SASRec",
    "SASRecConfig",
    "Tiger",
    "TigerConfig",
    "h2rec",
    "h2rec_beauty",
    "hidvae_recommender",
    "load_bundle",
    "sasrec",
    "sasrec_beauty",
    "save_bundle",
    "tiger",
    "tiger_cpu",
    "tiger_small",
]
