"""A tiny dataset and configuration for fast training tests."""
from pathlib import Path

import torch

from pointcanon.config import TrainConfig


class Blobs(torch.utils.data.Dataset):
    """Two classes of tiny anisotropic Gaussian clouds (elongated along x vs along z)."""

    num_classes = 2
    classes = ["x-long", "z-long"]

    def __init__(self, n=48, points=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 2
        scale = torch.tensor([[3.0, 1.0, 0.5], [0.5, 1.0, 3.0]])[self.y]
        self.x = torch.randn(n, points, 3, generator=g) * scale[:, None]

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class NoisyBlobs(Blobs):
    """Blobs whose items draw random jitter from torch's global generator (a random transform)."""

    def __getitem__(self, i):
        return self.x[i] + 0.05 * torch.randn(self.x[i].shape), self.y[i]


def small_config(**kw):
    base = dict(backbone="pointnet", backbone_kwargs={"width": 32, "input_transform": False}, epochs=3,
                batch_size=8, num_points=32, lr=3e-3, seed=1, eval_every=1)
    base.update(kw)
    return TrainConfig(**base)


def main(out: str) -> None:
    """Train the Blobs task into ``out`` with a checkpoint after every step (for kill/resume tests)."""
    from pointcanon.train import train

    torch.set_num_threads(1)
    train(small_config(epochs=4, checkpoint_every=1), Blobs(n=96), out=out, progress=False, log=lambda s: None,
          resume=(Path(out) / "last.pt").exists())


if __name__ == "__main__":
    import sys

    main(sys.argv[1])


class PartBlobs(torch.utils.data.Dataset):
    """Part segmentation toy: category 0 has parts {0, 1} (x < 0 / x >= 0 along its long axis),
    category 1 has parts {2, 3, 4} (three slabs along z)."""

    task = "partseg"
    num_parts, num_categories = 5, 2
    category_parts = [range(0, 2), range(2, 5)]

    def __init__(self, n=48, points=64, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.cat = torch.arange(n) % 2
        scale = torch.tensor([[3.0, 1.0, 0.5], [0.5, 1.0, 3.0]])[self.cat]
        self.x = torch.randn(n, points, 3, generator=g) * scale[:, None]
        slab = torch.bucketize(self.x[..., 2].contiguous(), torch.tensor([-1.0, 1.0]))
        self.parts = torch.where(self.cat[:, None] == 0, (self.x[..., 0] >= 0).long(), 2 + slab)

    def __len__(self):
        return len(self.cat)

    def __getitem__(self, i):
        return self.x[i], self.cat[i], self.parts[i]
