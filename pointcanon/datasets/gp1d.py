"""1-D regression tasks from a process that is stationary except for a localised, position-dependent part:
the controlled setting of Ashman et al. (2024) for approximately equivariant neural processes.

    f(x) = g(x) + a * exp(-(x - c)^2 / (2 w^2)) * sin(2 pi (x - c) / p),    y = f(x) + noise

``g`` is a Gaussian process with an RBF kernel (stationary: translation-invariant in distribution); the
second term (amplitude ``a`` drawn per task around ``amplitude``) lives only near ``x = c``: a strictly
translation-equivariant model cannot know where it is, a model with position information can.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def sample_tasks(n: int, *, generator: torch.Generator, num_context: tuple[int, int] = (3, 30), num_target: int = 50,
                 domain: tuple[float, float] = (-2.0, 2.0), lengthscale: float = 0.3, noise: float = 0.05,
                 centre: float = 1.0, width: float = 0.3, period: float = 0.25, amplitude: float = 1.0,
                 local: bool = True, dtype=torch.float32) -> dict[str, Tensor]:
    """``n`` tasks: ``xc, yc, mask`` ``(n, Nc_max)`` (``mask``: the real context points; 3 to 30 per task by
    default) and ``xt, yt`` ``(n, num_target)``; inputs uniform on ``domain``. ``local=False`` drops the
    position-dependent term (the stationary part alone)."""
    lo_c, hi_c = num_context
    if not (1 <= lo_c <= hi_c and num_target >= 1 and n >= 1):
        raise ValueError(f"need 1 <= num_context[0] <= num_context[1], num_target >= 1, n >= 1; got {num_context}, "
                         f"{num_target}, {n}")
    m = hi_c + num_target
    lo, hi = domain
    x = lo + (hi - lo) * torch.rand(n, m, generator=generator, dtype=torch.float64)
    k = torch.exp(-0.5 * ((x[:, :, None] - x[:, None, :]) / lengthscale) ** 2) + 1e-6 * torch.eye(m, dtype=torch.float64)
    g = (torch.linalg.cholesky(k) @ torch.randn(n, m, 1, generator=generator, dtype=torch.float64)).squeeze(-1)
    f = g
    if local:
        a = amplitude * (1 + 0.2 * torch.randn(n, 1, generator=generator, dtype=torch.float64))
        f = f + a * torch.exp(-0.5 * ((x - centre) / width) ** 2) * torch.sin(2 * math.pi * (x - centre) / period)
    y = f + noise * torch.randn(n, m, generator=generator, dtype=torch.float64)
    counts = torch.randint(lo_c, hi_c + 1, (n,), generator=generator)
    mask = torch.arange(hi_c)[None, :] < counts[:, None]
    return {"xc": x[:, :hi_c].to(dtype), "yc": y[:, :hi_c].to(dtype), "mask": mask,
            "xt": x[:, hi_c:].to(dtype), "yt": y[:, hi_c:].to(dtype)}
