"""The ``pointcanon`` command: ``train``, ``eval``, ``demo``, ``data``, ``measure``, ``canonicalize``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from .datasets import DATASET_TASKS

PROTOCOL_CHOICES = ("upright", "z", "SO3")  # = train.PROTOCOLS (not imported here: keeps --help fast)
TRAIN_ROTATIONS = ("none", "z", "SO3")
TASK_CHOICES = ("cls", "partseg")
CLS_DATASETS = tuple(name for name, task in DATASET_TASKS.items() if task == "cls")
PARTSEG_DATASETS = tuple(name for name, task in DATASET_TASKS.items() if task == "partseg")
DATASET_CHOICES = tuple(DATASET_TASKS)


def _rotation(allowed):
    """argparse type: a rotation name in the one group vocabulary (any case)."""
    def parse(value):
        from .config import parse_rotation

        try:
            return parse_rotation(value, allowed)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = "rotation"
    return parse


def _threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def _datasets(name: str, root: str | None, num_points: int, max_shapes: int | None = None, splits=("train", "test")):
    from .datasets import Subsample, build_dataset

    if max_shapes is not None and max_shapes < 1:
        raise ValueError(f"--max-shapes must be a positive number of shapes, got {max_shapes}")
    sets = [build_dataset(name, root, split, num_points) for split in splits]
    return [s if max_shapes is None else Subsample(s, max_shapes) for s in sets]


def _resolve_task(task: str | None, dataset: str) -> str:
    """The task of ``--task`` (default: the dataset's), checked against the dataset."""
    native = DATASET_TASKS[dataset]
    if task is None:
        return native
    if task != native:
        fitting = CLS_DATASETS if task == "cls" else PARTSEG_DATASETS
        raise ValueError(f"--task {task} does not fit --dataset {dataset} (a {native} dataset); "
                         f"--task {task} needs --dataset {' or '.join(fitting)}")
    return task


def _score_rows(name: str, task: str, results: dict) -> dict[str, dict[str, float]]:
    """Table rows: accuracy (classification) or instance and class mIoU (part segmentation)."""
    if task == "partseg":
        return {f"{name} instance mIoU": {p: r["instance_miou"] for p, r in results.items()},
                f"{name} class mIoU": {p: r["class_miou"] for p, r in results.items()}}
    return {name: {p: r["acc"] for p, r in results.items()}}


def _print_table(rows: dict[str, dict[str, float]], protocols) -> None:
    width = max(len(k) for k in rows) + 2
    print(f"{'model':<{width}}" + "".join(f"{p:>10}" for p in protocols))
    for name, accs in rows.items():
        print(f"{name:<{width}}" + "".join(f"{100 * accs[p]:>9.1f}%" for p in protocols))


def _canonicalizer_file(path: str, kind: str) -> tuple[str, dict, str]:
    """``--canonicalizer-weights``: the canonicalizer kind, its hyperparameters and the resolved path of a
    canonicalizer file (``shipped``: the shipped upright ModelNet40 canonicalizer)."""
    from .mesh import DEFAULT_WEIGHTS, load_canonicalizer

    path = str(DEFAULT_WEIGHTS) if path == "shipped" else path
    canon = load_canonicalizer(path)
    found = {"VNCanonicalizer": "vn", "CandidateCanonicalizer": "candidate"}[type(canon).__name__]
    if kind not in ("none", found):
        raise ValueError(f"--canonicalizer-weights {path} holds a {found!r} canonicalizer, not --canonicalizer {kind}")
    return found, dict(canon.hparams), str(Path(path).resolve())


def cmd_train(a, **extra) -> int:
    from .config import TrainConfig
    from .train import evaluate, train

    task = _resolve_task(getattr(a, "task", None), a.dataset)
    max_shapes = getattr(a, "max_shapes", None)
    from .core.io import check_output_dir

    out = check_output_dir(a.out, "--out")
    if not a.resume and (out / "last.pt").exists():
        raise ValueError(f"--out {out} already holds a run (last.pt); pass --resume to continue it, or choose "
                         "another --out (nothing is overwritten)")
    kind, weights = a.canonicalizer, getattr(a, "canonicalizer_weights", None)
    if weights:
        kind, extra["canonicalizer_kwargs"], weights = _canonicalizer_file(weights, kind)
    cfg = TrainConfig(task=task, dataset=a.dataset, data_root=a.data_root, backbone=a.backbone, canonicalizer=kind,
                      train_rotation=a.train_rotation, prior=a.prior, prior_weight=a.prior_weight, epochs=a.epochs,
                      batch_size=a.batch_size, num_points=a.num_points, lr=a.lr, seed=a.seed,
                      checkpoint_every=a.checkpoint_every, canonicalizer_weights=weights,
                      freeze_canonicalizer=getattr(a, "freeze_canonicalizer", False),
                      hypotheses=getattr(a, "hypotheses", 1), **extra).validate()
    from .core.io import write_json
    from .distributed import init_from_env, shutdown

    dist = init_from_env()
    say = print if dist.is_main else (lambda *args: None)
    train_set, test_set = _datasets(cfg.dataset, cfg.data_root, cfg.num_points, max_shapes)
    say(f"train: {train_set}\ntest:  {test_set}")
    if dist.active:
        say(f"data parallel over {dist.world} processes: global batch {cfg.batch_size}, "
            f"{cfg.batch_size // dist.world} per process")
    t0 = time.time()
    try:
        model, _ = train(cfg, train_set, test_set, out=a.out, resume=a.resume, dist=dist, log=say,
                         num_workers=a.workers)
        results = {p: evaluate(model, test_set, p, seed=cfg.seed, dist=dist) for p in PROTOCOL_CHOICES}
    finally:
        shutdown(dist)
    if dist.is_main:
        write_json(Path(a.out) / "eval.json", {"checkpoint": str(Path(a.out) / "last.pt"), "task": cfg.task,
                                               "max_shapes": max_shapes, "train_seconds": round(time.time() - t0, 1),
                                               "protocols": results})
        _print_table(_score_rows(f"{cfg.backbone}+{cfg.canonicalizer}", cfg.task, results), PROTOCOL_CHOICES)
    return 0


def cmd_adapt(a) -> int:
    from .core.io import load_checkpoint
    from .config import TrainConfig
    from .train import DEFAULT_PRIOR

    src = TrainConfig.from_checkpoint(load_checkpoint(a.pretrained), a.pretrained)
    prior = DEFAULT_PRIOR[src.train_rotation] if a.prior == "auto" else a.prior
    a.task, a.dataset, a.data_root = src.task, src.dataset, a.data_root or src.data_root
    a.backbone, a.train_rotation, a.num_points = src.backbone, src.train_rotation, src.num_points
    a.prior, a.prior_weight = prior, (a.prior_weight if prior != "none" and not a.freeze_canonicalizer else 0.0)
    if a.freeze_canonicalizer:
        a.prior = "none"
    print(f"adapting {a.pretrained} ({src.backbone}, trained with rotation {src.train_rotation!r}); prior {prior!r}, "
          f"weight {a.prior_weight}; backbone {'fine-tuned' if a.finetune_backbone else 'frozen'}")
    extra = dict(backbone_kwargs=src.backbone_kwargs, pretrained=str(a.pretrained), freeze_backbone=not a.finetune_backbone,
                 backbone_lr=a.backbone_lr, dataset_kwargs=src.dataset_kwargs)
    return cmd_train(a, **extra)


def cmd_eval(a) -> int:
    from .core.io import write_json
    from .models import load_model
    from .train import evaluate

    from .core.io import check_output_file
    from .tasks import get_task

    if a.num_points is not None and a.num_points < 1:
        raise ValueError(f"--num-points must be a positive number of points, got {a.num_points}")
    out = check_output_file(a.out if a.out else Path(a.checkpoint).with_suffix(".eval.json"), "--out")
    model, cfg, state = load_model(a.checkpoint)
    if a.hypotheses is not None:
        from .nn import CanonicalizedModel

        if not (isinstance(model, CanonicalizedModel) and cfg.canonicalizer == "candidate" and cfg.task == "cls"):
            raise ValueError(f"--hypotheses needs a classifier with a candidate canonicalizer; {a.checkpoint} has "
                             f"canonicalizer {cfg.canonicalizer!r}, task {cfg.task!r}")
        model = CanonicalizedModel(model.canonicalizer, model.backbone, hypotheses=a.hypotheses).eval()
    dataset = a.dataset or cfg.dataset
    if DATASET_TASKS.get(dataset, cfg.task) != cfg.task:
        fitting = CLS_DATASETS if cfg.task == "cls" else PARTSEG_DATASETS
        raise ValueError(f"{a.checkpoint} is a {cfg.task} model; it cannot be evaluated on --dataset {dataset} "
                         f"(a {DATASET_TASKS[dataset]} dataset); use {' or '.join(fitting)}")
    (test_set,) = _datasets(dataset, a.data_root or cfg.data_root, a.num_points or cfg.num_points, a.max_shapes,
                            splits=("test",))
    sizes = get_task(cfg.task).sizes(test_set)
    if sizes != state.get("sizes", sizes):
        raise ValueError(f"{a.checkpoint} was trained with {state['sizes']} but --dataset {dataset} has {sizes}: "
                         "its outputs would not mean this dataset's classes")
    results = {p: evaluate(model, test_set, p, seed=a.seed, progress=True) for p in a.protocols}
    _print_table(_score_rows(Path(a.checkpoint).name, cfg.task, results), a.protocols)
    write_json(out, {"checkpoint": str(a.checkpoint), "task": cfg.task, "dataset": dataset,
                     "hypotheses": a.hypotheses or cfg.hypotheses,
                     "max_shapes": a.max_shapes, "protocols": results})
    print(f"wrote {out}")
    return 0


def cmd_demo(a) -> int:
    from .demo import run_demo

    run_demo(a.out, seed=a.seed, quick=a.quick)
    return 0


def cmd_data(a) -> int:
    from .datasets.download import download_modelnet40

    if a.name != "modelnet40":
        raise ValueError(f"unknown dataset {a.name!r}; available: modelnet40")
    kwargs = {k: v for k, v in (("url", a.url), ("sha256", a.sha256)) if v}
    path = download_modelnet40(a.root, **kwargs)
    print(f"ModelNet40 is ready in {path}")
    return 0


def cmd_measure(a) -> int:
    from .measure import load_points, run_measure

    points = load_points(a.points) if a.points else None
    run_measure(a.checkpoint, points=points, dataset=a.dataset, data_root=a.data_root, num_shapes=a.num_shapes,
                group=a.group, num_samples=a.num_samples, layers=a.layers, exact=a.exact, float32=a.float32,
                plot=a.plot, json_path=a.json, seed=a.seed)
    return 0


def cmd_canonicalize(a) -> int:
    from .mesh import canonicalize_files

    from .core.io import check_output_dir

    if a.num_points < 1:
        raise ValueError(f"--num-points must be a positive number of surface samples, got {a.num_points}")
    check_output_dir(a.out, "-o/--out")
    if a.threads is None:
        torch.set_num_threads(1)  # one small network call per file: thread hand-offs cost more than they save

    report = canonicalize_files(a.inputs, a.out, a.model, num_points=a.num_points, seed=a.seed, sampling=a.sampling,
                                render=a.render, progress=not a.no_progress)
    done, failed = len(report["files"]), len(report["errors"])
    print(f"canonicalized {done} of {done + failed} inputs into {a.out}; transforms in "
          f"{Path(a.out) / 'transforms.json'}" + (f"; {failed} failed (listed under 'errors')" if failed else ""))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pointcanon", description="Learned canonicalization for point clouds.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a (canonicalized) classifier or part segmenter")
    t.add_argument("--task", choices=TASK_CHOICES, default=None,
                   help="cls (classification) or partseg (part segmentation); default: the dataset's task")
    t.add_argument("--dataset", choices=DATASET_CHOICES, default="synthetic",
                   help=f"classification: {', '.join(CLS_DATASETS)}; part segmentation: {', '.join(PARTSEG_DATASETS)}")
    t.add_argument("--data-root", default=None, help="dataset folder (not needed for synthetic)")
    t.add_argument("--backbone", choices=("pointnet", "dgcnn"), default="pointnet")
    t.add_argument("--canonicalizer", choices=("none", "vn", "vn-approx", "candidate"), default="none",
                   help="candidate: scored principal-axis candidates + refinement (recommended); vn: vector-neuron "
                        "regression; vn-approx: approximately equivariant (learned fixed symmetry-breaking vectors)")
    t.add_argument("--canonicalizer-weights", default=None, metavar="FILE",
                   help="start the canonicalizer from a canonicalizer file ('shipped': the upright ModelNet40 one)")
    t.add_argument("--freeze-canonicalizer", action="store_true", help="keep the canonicalizer fixed (needs weights)")
    t.add_argument("--hypotheses", type=int, default=1, metavar="K",
                   help="candidate canonicalizer: show the classifier the K most likely up hypotheses (training: one "
                        "drawn per shape; evaluation: their weighted average); K backbone passes at evaluation")
    t.add_argument("--train-rotation", type=_rotation(TRAIN_ROTATIONS), default="none", metavar="{none,z,SO3}",
                   help="random rotation of every training shape (any case)")
    t.add_argument("--prior", choices=("none", "identity", "upright", "empirical"), default="none",
                   help="empirical: distance to the nearest orientation of the --train-rotation augmentation")
    t.add_argument("--prior-weight", type=float, default=0.0)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--num-points", type=int, default=1024)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (0: per epoch)")
    t.add_argument("--out", required=True, help="output folder: config.json, metrics.jsonl, last.pt, eval.json")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--max-shapes", type=int, default=None,
                   help="use only N shapes of each split, spread evenly (quick checks; not saved in the config)")
    t.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes that prepare batches (the result does not depend on it)")
    t.set_defaults(func=cmd_train)

    ad = sub.add_parser("adapt", help="put a VN canonicalizer with a prior in front of a pretrained classifier")
    ad.add_argument("--pretrained", required=True, help="checkpoint of a plain classifier (pointcanon train --canonicalizer none)")
    ad.add_argument("--prior", choices=("auto", "none", "identity", "upright", "empirical"), default="auto",
                    help="auto: identity if the backbone was trained upright, upright if with z-rotations, none if SO(3)")
    ad.add_argument("--prior-weight", type=float, default=1.0)
    ad.add_argument("--canonicalizer", choices=("vn", "candidate"), default="candidate",
                    help="candidate: scored principal-axis candidates + refinement; vn: vector-neuron regression")
    ad.add_argument("--canonicalizer-weights", default=None, metavar="FILE",
                    help="start from a canonicalizer file ('shipped': the upright ModelNet40 one)")
    ad.add_argument("--freeze-canonicalizer", action="store_true",
                    help="keep the canonicalizer of --canonicalizer-weights fixed (no prior term then)")
    ad.add_argument("--finetune-backbone", action="store_true", help="also train the backbone (default: frozen)")
    ad.add_argument("--hypotheses", type=int, default=1, metavar="K",
                    help="show the backbone the canonicalizer's K most likely up hypotheses (see train --hypotheses)")
    ad.add_argument("--backbone-lr", type=float, default=None, help="backbone learning rate when fine-tuned")
    ad.add_argument("--data-root", default=None, help="default: the pretrained run's")
    ad.add_argument("--epochs", type=int, default=5,
                    help="0: only assemble the pretrained backbone and the canonicalizer (then evaluate)")
    ad.add_argument("--batch-size", type=int, default=32)
    ad.add_argument("--lr", type=float, default=1e-3)
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--checkpoint-every", type=int, default=0)
    ad.add_argument("--out", required=True)
    ad.add_argument("--resume", action="store_true")
    ad.add_argument("--max-shapes", type=int, default=None, help="use only N shapes of each split (quick checks)")
    ad.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (the result does not depend on it)")
    ad.set_defaults(func=cmd_adapt)

    e = sub.add_parser("eval", help="evaluate a checkpoint under rotation protocols")
    e.add_argument("checkpoint")
    e.add_argument("--protocols", nargs="+", type=_rotation(PROTOCOL_CHOICES), default=list(PROTOCOL_CHOICES),
                   metavar="{upright,z,SO3}", help="test rotations (any case): none, random about z, random in SO(3)")
    e.add_argument("--dataset", choices=DATASET_CHOICES, default=None)
    e.add_argument("--data-root", default=None)
    e.add_argument("--num-points", type=int, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="JSON file (default: next to the checkpoint)")
    e.add_argument("--max-shapes", type=int, default=None, help="evaluate on N test shapes, spread evenly")
    e.add_argument("--hypotheses", type=int, default=None, metavar="K",
                   help="evaluate a candidate-canonicalized classifier over its K most likely up hypotheses "
                        "(default: as trained)")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="plain vs canonicalized PointNet on synthetic shapes (about 3 minutes)")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quick", action="store_true", help="a tiny run for smoke tests")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("data", help="download and verify a dataset")
    g.add_argument("name", choices=("modelnet40",))
    g.add_argument("--root", required=True)
    g.add_argument("--url", default=None)
    g.add_argument("--sha256", default=None)
    g.set_defaults(func=cmd_data)

    m = sub.add_parser("measure", help="per-layer learned equivariance of a checkpoint: table and plot")
    m.add_argument("--checkpoint", required=True)
    m.add_argument("--group", choices=("SO3", "O3", "z"), default="SO3")
    m.add_argument("--num-shapes", type=int, default=32, help="test shapes, spread over the test set")
    m.add_argument("--num-samples", type=int, default=4, help="random group elements")
    m.add_argument("--points", default=None, help="measure on these clouds instead: .npy or .pt array (B, N, 3)")
    m.add_argument("--dataset", choices=("synthetic", "modelnet40", "modelnet-off"), default=None)
    m.add_argument("--data-root", default=None)
    m.add_argument("--layers", nargs="+", default=None, help="layer names (default: every layer)")
    m.add_argument("--exact", action="store_true", help="zero the fixed inputs of an approximate canonicalizer")
    m.add_argument("--float32", action="store_true", help="measure in float32 (default float64)")
    m.add_argument("--plot", default=None, help="PNG (default: CHECKPOINT.measure.png)")
    m.add_argument("--json", default=None, help="JSON (default: CHECKPOINT.measure.json)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_measure)

    c = sub.add_parser("canonicalize", help="move meshes (.off .obj .ply .stl) into their canonical pose",
                       description="Canonicalize mesh files or folders (searched recursively) with a VN canonicalizer; "
                                   "writes the moved meshes (same format), OUT/transforms.json and, with --render, "
                                   "before/after PNGs. A bad file is reported and skipped; the exit code is 1 if any "
                                   "failed.")
    c.add_argument("inputs", nargs="+", metavar="INPUT", help="mesh files or folders")
    c.add_argument("-o", "--out", required=True, help="output folder")
    c.add_argument("--model", default=None,
                   help="canonicalizer file or pointcanon checkpoint (default: the shipped weights)")
    c.add_argument("--num-points", type=int, default=2048, help="surface samples the canonicalizer sees per mesh")
    c.add_argument("--sampling", choices=("surface", "vertices"), default="surface",
                   help="surface: area-weighted samples of the faces; vertices: the mesh vertices")
    c.add_argument("--seed", type=int, default=0, help="seed of the surface samples")
    c.add_argument("--render", action="store_true", help="also write before/after PNG thumbnails (matplotlib)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_canonicalize)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"pointcanon {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # training diverged
        print(f"pointcanon {args.command}: error: training diverged ({e}); lower --lr (or --prior-weight) and "
              "start again", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
