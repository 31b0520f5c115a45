"""A tiny dataset and configuration for fast training tests."""
import torch

from pointcanon.train import TrainConfig


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


def small_config(**kw):
    base = dict(backbone="pointnet", backbone_kwargs={"width": 32, "input_transform": False}, epochs=3,
                batch_size=8, num_points=32, lr=3e-3, seed=1, eval_every=1)
    base.update(kw)
    return TrainConfig(**base)
