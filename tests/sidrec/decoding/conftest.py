"""Decoding tests run tiny tensors through thousands of ops: one intra-op thread.

On a busy 2-core box the OpenMP fan-out of a 6-element softmax costs ~650 us
instead of ~3 us, which would make the reference searches 100x slower.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
