"""transformers helpers shared by the tokenizers and the models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_loading"]


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Load a checkpoint without transformers' report and bar. A BERT checkpoint
    loaded without its pooler (add_pooling_layer=False, on purpose) gets its
    weights listed as UNEXPECTED in a warning table and a "Loading weights" bar,
    which read like errors in a job's log. Errors still show."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
