"""Write the project's own tiny fixtures into a folder, in the official layouts the readers expect, so
that a loader or a pipeline can be tried without downloading anything:

    .venv/bin/python data/make_fixtures.py data/fixtures       # ~1 MB, a few seconds

- ``modelnet40_hdf5/``: the 8 procedurally generated classes of ``pointcanon.datasets.synthetic`` in the
  ``modelnet40_ply_hdf5_2048`` layout (``shape_names.txt``, ``{train,test}_files.txt``,
  ``ply_data_{train,test}0.h5`` with ``data`` (n, 1024, 3) and ``label`` (n, 1)), z up;
  read it with ``ModelNet40HDF5("data/fixtures/modelnet40_hdf5", "train")``;
- ``meshes/``: a few synthetic meshes as ``.off`` files (ModelNet's raw format) in ``<class>/<split>/``
  folders, for ``pointcanon canonicalize`` and ``ModelNetOFF``.

Nothing here is a real dataset; the real ones are described in data/README.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def write_modelnet_layout(root: Path, per_class: dict[str, int], num_points: int = 1024) -> None:
    import h5py

    from pointcanon.datasets.synthetic import SYNTHETIC_CLASSES, generate_shapes

    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("".join(f"{c}\n" for c in SYNTHETIC_CLASSES))
    for split, n in per_class.items():
        data, label = [], []
        for c in range(len(SYNTHETIC_CLASSES)):
            data.append(generate_shapes(c, n, num_points, seed=0, split=split))
            label.append(np.full((n, 1), c, np.uint8))
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f.create_dataset("data", data=np.concatenate(data).astype(np.float32))
            f.create_dataset("label", data=np.concatenate(label))
        (root / f"{split}_files.txt").write_text(f"ply_data_{split}0.h5\n")


def write_meshes(root: Path) -> None:
    import trimesh

    shapes = {"box": trimesh.creation.box((2.0, 1.0, 0.5)), "cone": trimesh.creation.cone(0.5, 1.5),
              "capsule": trimesh.creation.capsule(1.0, 0.3)}
    for name, mesh in shapes.items():
        for split in ("train", "test"):
            folder = root / name / split
            folder.mkdir(parents=True, exist_ok=True)
            mesh.export(folder / f"{name}_0001.off")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="data/fixtures")
    a = p.parse_args(argv)
    out = Path(a.out)
    write_modelnet_layout(out / "modelnet40_hdf5", {"train": 16, "test": 4})
    write_meshes(out / "meshes")
    print(f"fixtures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
