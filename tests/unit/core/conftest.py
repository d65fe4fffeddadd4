"""gumbel_core tests run torch on one thread: the tensors are tiny, and on a loaded machine
intra-op threads only add synchronisation (a step gets many times slower)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
