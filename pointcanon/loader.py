"""Training batches through a :class:`torch.utils.data.DataLoader` whose result does not depend on the
number of worker processes, so a run resumed from any step continues exactly.

Each batch is one key ``(seed, indices)``; fetching it seeds torch, numpy and ``random`` with ``seed``
and collates ``dataset[i]`` for ``i`` in ``indices`` with the task's collate function. A dataset's random
transforms therefore draw the same numbers in the main process and in any worker, whichever worker
fetches the batch and however far ahead it prefetches.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class SeededBatches(Dataset):
    """Map-style dataset of whole batches: ``key = (seed, indices)`` -> ``collate(dataset, indices)``."""

    def __init__(self, dataset, collate: Callable):
        self.dataset, self.collate = dataset, collate

    def __len__(self) -> int:  # keys are not positions; the sampler decides what is fetched
        return len(self.dataset)

    def __getitem__(self, key):
        seed, indices = key
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        return self.collate(self.dataset, torch.as_tensor(indices))


def batch_loader(dataset, collate: Callable, keys: Sequence[tuple[int, Sequence[int]]], *, num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """A DataLoader yielding ``collate(dataset, indices)`` for each ``(seed, indices)`` of ``keys`` in order.

    ``num_workers`` processes prefetch batches (0: in this process); ``pin_memory`` for CUDA copies.
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    return DataLoader(SeededBatches(dataset, collate), sampler=list(keys), batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False)
