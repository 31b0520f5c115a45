"""Does the shipped canonicalizer's up axis depend on how densely a surface is sampled, and does the
``fragile`` flag catch the shapes where it does? Up axis within 10 deg of the true up, the share flagged
fragile and the accuracy on the unflagged shapes:

- the five raw ModelNet10 bathtub meshes (z up), sampled uniformly with ``trimesh.sample.sample_surface``
  (seed 1) at 1,000 / 2,000 / 5,000 / 10,000 / 20,000 points and canonicalized like ``pointcanon
  canonicalize`` does (:func:`pointcanon.mesh.estimate_transform`, float64);
- the ShapeNetPart test shapes (y up mapped to z up by the reader), random subsets (seed 0) of 512 / 1,024
  of their 2,048 points, and all of them;
- ModelNet40 test shapes (1,024 points): the share flagged, the share of wrong up axes flagged and the
  accuracy on the unflagged shapes for a range of ``fragile_margin`` values (how the default was chosen).

"Stable" counts the shapes whose canonical up axis (in input coordinates) stays within 10 deg across all
densities. Last, why: bathtub_0001 resampled with 12 seeds at one density (1,024 and 20,000 points), with
the shipped 2 views and with 8: how often it comes out upright, upside down or sideways. One torch thread;
about 2 minutes.

    .venv/bin/python scripts/density_stability.py --out docs/results/density_stability.json
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch

from pointcanon.measure import UPRIGHT_DATASETS as DATASETS  # noqa: E402

from pointcanon.core.io import write_json  # noqa: E402
from pointcanon.datasets.modelnet import load_off  # noqa: E402
from pointcanon.mesh import estimate_transform, load_default_canonicalizer  # noqa: E402
from pointcanon.nn.hypotheses import up_margin, up_masses  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATHTUBS = ROOT.parent / "shared" / "data" / "meshes" / "modelnet10_bathtub"
MESH_DENSITIES = (1000, 2000, 5000, 10000, 20000)
CLOUD_DENSITIES = (512, 1024, 2048)
MARGINS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
COS10 = float(np.cos(np.radians(10)))


def summary(up_cos: np.ndarray, fragile: np.ndarray) -> dict:
    """Scores of ``(n,)`` cosines between canonical and true up and ``(n,)`` fragile flags."""
    right = up_cos > COS10
    return {"shapes": int(len(right)), "up_within_10deg": float(right.mean()), "fragile": float(fragile.mean()),
            "up_within_10deg_unflagged": float(right[~fragile].mean()) if (~fragile).any() else None,
            "wrong_flagged": float(fragile[~right].mean()) if (~right).any() else None}


def stability(axes: list[np.ndarray], fragile: list[np.ndarray]) -> dict:
    """Share of shapes whose up axes ``(n, 3)`` (one array per density) agree within 10 deg across densities,
    over all shapes and over those never flagged fragile."""
    ref = axes[0]
    same = np.all([np.einsum("ij,ij->i", a, ref) > COS10 for a in axes[1:]], 0)
    never = ~np.any(fragile, 0)
    return {"stable": float(same.mean()), "never_flagged": float(never.mean()),
            "stable_never_flagged": float(same[never].mean()) if never.any() else None}


def bathtubs(canon) -> dict:
    import trimesh

    rows, axes, flags = {}, [], []
    paths = sorted(BATHTUBS.glob("*.off"))
    for n in MESH_DENSITIES:
        per = []
        for path in paths:
            m = load_off(path)
            points, _ = trimesh.sample.sample_surface(trimesh.Trimesh(m.vertices, m.faces, process=False), n, seed=1)
            f = estimate_transform(np.asarray(points, np.float64), canon)
            up = f.transform[2, :3]  # the canonical z axis in input coordinates (T[:3, :3] = R.T)
            per.append((path.name, float(up[2]), f.fragile, up))
        cos, frag = np.array([p[1] for p in per]), np.array([p[2] for p in per])
        rows[n] = {**summary(cos, frag), "up_angle_deg": {p[0]: round(float(np.degrees(np.arccos(np.clip(p[1], -1, 1)))), 1)
                                                          for p in per},
                   "fragile_shapes": [p[0] for p in per if p[2]]}
        axes.append(np.stack([p[3] for p in per]))
        flags.append(frag)
    return {"densities": rows, **stability(axes, flags)}


def resampling(canon, seeds=range(1, 13)) -> dict:
    """``{views: {n: {"upright", "upside_down", "sideways"}}}``: bathtub_0001 at n points, one count per seed."""
    import trimesh

    m = load_off(BATHTUBS / "bathtub_0001.off")
    mesh = trimesh.Trimesh(m.vertices, m.faces, process=False)
    out, saved = {}, canon.views
    for views in (saved, 8):
        canon.views = views
        for n in (1024, 20000):
            cos = np.array([estimate_transform(np.asarray(trimesh.sample.sample_surface(mesh, n, seed=k)[0], np.float64),
                                               canon).transform[2, 2] for k in seeds])
            out.setdefault(views, {})[n] = {"upright": int((cos > COS10).sum()), "upside_down": int((cos < -COS10).sum()),
                                            "sideways": int((np.abs(cos) <= COS10).sum())}
    canon.views = saved
    return out


def clouds(canon, points: torch.Tensor, batch: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up axes ``(n, 3)``, fragile flags ``(n,)`` and up margins ``(n,)`` of upright clouds ``(n, N, 3)``."""
    axes, flags, margins = [], [], []
    with torch.no_grad():
        for i in range(0, len(points), batch):
            r = canon(points[i:i + batch])
            axes.append(r.frame[:, :, 2])
            flags.append(r.fragile)
            margins.append(up_margin(up_masses(r.logits, canon.up_group)[0]))
    return torch.cat(axes).double().numpy(), torch.cat(flags).numpy(), torch.cat(margins).double().numpy()


def shapenet(canon) -> dict:
    reader, root, _ = DATASETS["shapenetpart"]
    test = reader(ROOT / root, "test").points
    g = torch.Generator().manual_seed(0)
    rows, axes, flags = {}, [], []
    for n in CLOUD_DENSITIES:
        idx = torch.stack([torch.randperm(test.shape[1], generator=g)[:n] for _ in range(len(test))])
        sub = torch.gather(test, 1, idx.unsqueeze(-1).expand(-1, -1, 3)) if n < test.shape[1] else test
        a, f, _ = clouds(canon, sub)
        rows[n] = summary(a[:, 2], f)
        axes.append(a)
        flags.append(f)
    return {"densities": rows, **stability(axes, flags)}


def modelnet_margins(canon) -> tuple[dict, dict]:
    """Scores per ``fragile_margin`` and the wrong up axes that the model's own margin leaves unflagged."""
    reader, root, _ = DATASETS["modelnet40"]
    a, _, margin = clouds(canon, reader(ROOT / root, "test").points)
    angle = np.degrees(np.arccos(np.clip(a[:, 2], -1, 1)))[(a[:, 2] <= COS10) & (margin >= canon.fragile_margin)]
    missed = {"count": int(len(angle)), "near_90deg": int(((angle > 70) & (angle < 110)).sum()),
              "near_180deg": int((angle > 160).sum())}
    return {str(t): summary(a[:, 2], margin < t) for t in MARGINS}, missed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    canon = load_default_canonicalizer()
    result = {"fragile_margin": canon.fragile_margin, "views": canon.views}
    result["bathtubs"] = bathtubs(canon)
    result["shapenetpart_test"] = shapenet(canon)
    result["modelnet40_test_by_fragile_margin"], result["modelnet40_wrong_unflagged"] = modelnet_margins(canon)
    result["bathtub_0001_resampled_12_seeds"] = resampling(canon)
    result["seconds"] = round(time.time() - t0, 1)
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"  # noqa: E731
    for name in ("bathtubs", "shapenetpart_test"):
        r = result[name]
        for n, s in r["densities"].items():
            print(f"{name} {n:>6} points: up<=10deg {pct(s['up_within_10deg'])}%, fragile {pct(s['fragile'])}%, "
                  f"unflagged up<=10deg {pct(s['up_within_10deg_unflagged'])}%, wrong flagged {pct(s['wrong_flagged'])}%"
                  + (f"  {s['up_angle_deg']}" if "up_angle_deg" in s else ""))
        print(f"{name}: up axis the same at every density {pct(r['stable'])}%; never flagged {pct(r['never_flagged'])}%,"
              f" of which stable {pct(r['stable_never_flagged'])}%")
    for t, s in result["modelnet40_test_by_fragile_margin"].items():
        print(f"modelnet40 test, fragile_margin {t}: flagged {pct(s['fragile'])}%, wrong up axes flagged "
              f"{pct(s['wrong_flagged'])}%, up<=10deg unflagged {pct(s['up_within_10deg_unflagged'])}% "
              f"(all {pct(s['up_within_10deg'])}%)")
    m = result["modelnet40_wrong_unflagged"]
    print(f"modelnet40 test, wrong up axes left unflagged at {canon.fragile_margin}: {m['count']} ({m['near_90deg']} "
          f"near 90 deg, {m['near_180deg']} near 180 deg)")
    for views, rows in result["bathtub_0001_resampled_12_seeds"].items():
        for n, c in rows.items():
            print(f"bathtub_0001, {n} points, 12 seeds, {views} views: upright {c['upright']}, upside down "
                  f"{c['upside_down']}, sideways {c['sideways']}")
    print(f"{result['seconds']} s")
    if a.out:
        write_json(a.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
