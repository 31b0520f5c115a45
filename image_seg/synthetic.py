"""Procedural upright scenes (sky above, ground below, things standing on the ground) for tests and
demos of canonicalizer training; no data set needed."""
from __future__ import annotations

import numpy as np


def upright_scene(rng: np.random.Generator, height: int = 96, width: int = 128) -> np.ndarray:
    """One ``(height, width, 3)`` uint8 scene: a sky gradient, a horizon at 35-65 % of the height,
    textured ground darkening downwards, a sun and a few trees or houses standing on the horizon."""
    y = np.linspace(0, 1, height)[:, None, None]
    horizon = rng.uniform(0.35, 0.65)
    sky_top, sky_low = rng.uniform([40, 90, 170], [90, 150, 240]), rng.uniform([150, 190, 220], [210, 230, 255])
    sky = sky_top + (sky_low - sky_top) * np.clip(y / horizon, 0, 1)
    ground_col = rng.uniform([50, 70, 20], [120, 140, 60])
    ground = ground_col * (1.1 - 0.6 * np.clip((y - horizon) / (1 - horizon), 0, 1))
    img = np.where(y < horizon, sky, ground) * np.ones((1, width, 1))
    img += rng.normal(0, 6, img.shape) * (y >= horizon)
    yy, xx = np.mgrid[:height, :width]
    cx, cy, r = rng.uniform(0.1, 0.9) * width, rng.uniform(0.05, 0.25) * height, rng.uniform(0.04, 0.08) * height
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = rng.uniform([230, 210, 120], [255, 250, 180])
    base = int(horizon * height)
    for _ in range(rng.integers(2, 6)):
        x0, w = rng.uniform(0, width), rng.uniform(0.03, 0.12) * width
        h = rng.uniform(0.1, 0.3) * height
        col = rng.uniform([20, 40, 10], [90, 110, 60])
        trunk = (xx > x0) & (xx < x0 + w) & (yy < base + 2) & (yy > base - h)
        img[trunk] = col
        crown = (xx - x0 - w / 2) ** 2 + (yy - (base - h)) ** 2 < (1.5 * w) ** 2
        img[crown] = col * 0.8 + 20
    return np.clip(img, 0, 255).astype(np.uint8)


def upright_scenes(n: int, seed: int = 0, height: int = 96, width: int = 128) -> list[np.ndarray]:
    """``n`` scenes from :func:`upright_scene` with a seeded generator; sizes vary by up to 25 %."""
    rng = np.random.default_rng(seed)
    return [upright_scene(rng, int(height * rng.uniform(0.75, 1.25)), int(width * rng.uniform(0.75, 1.25))) for _ in range(n)]
