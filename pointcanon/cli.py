"""The ``pointcanon`` command: train, adapt, fit-canonicalizer, eval, fit-selector, demo, data, measure,
canonicalize, classify."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from jsonargparse import ArgumentError

from .datasets import DATASET_TASKS
from .registry import DATASETS

PROTOCOL_CHOICES = ("upright", "z", "SO3")  # = train.PROTOCOLS (not imported here: keeps --help fast)
CLS_DATASETS = tuple(name for name, cls in DATASETS.items() if cls.task == "cls")
PARTSEG_DATASETS = tuple(name for name, cls in DATASETS.items() if cls.task == "partseg")
DATASET_CHOICES = tuple(DATASETS)


def _datasets(name: str, root: str | None, num_points: int, max_shapes: int | None = None, splits=("train", "test"),
              kwargs: dict | None = None):
    from .datasets import Subsample, build_dataset

    if max_shapes is not None and max_shapes < 1:
        raise ValueError(f"--max-shapes must be a positive number of shapes, got {max_shapes}")
    sets = [build_dataset(name, root, split, num_points, **(kwargs or {})) for split in splits]
    return [s if max_shapes is None else Subsample(s, max_shapes) for s in sets]


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


def run_training(cfg, a) -> int:
    """Train ``cfg`` into ``a.out`` (``a.resume``, ``a.max_shapes``, ``a.workers``), then evaluate it
    under every protocol; ``--print-config`` only prints ``cfg``."""
    from .cliconfig import check_task, print_config, with_canonicalizer_file
    from .core.io import check_output_dir, write_json
    from .distributed import init_from_env, shutdown
    from .train import evaluate, train

    cfg = with_canonicalizer_file(cfg)
    check_task(cfg)
    cfg.validate()
    if cfg.hypothesis_rule == "selector":
        raise ValueError("hypothesis_rule 'selector' is fitted after training: `pointcanon fit-selector` on the run")
    if a.print_config:
        print_config(cfg)
        return 0
    if not a.out:
        raise ValueError("--out is required (the output folder)")
    out = check_output_dir(a.out, "--out")
    if not a.resume and (out / "last.pt").exists():
        raise ValueError(f"--out {out} already holds a run (last.pt); pass --resume to continue it, or choose "
                         "another --out (nothing is overwritten)")
    dist = init_from_env()
    say = print if dist.is_main else (lambda *args: None)
    train_set, test_set = _datasets(cfg.dataset, cfg.data_root, cfg.num_points, a.max_shapes,
                                    kwargs=cfg.dataset_kwargs)
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
                                               "max_shapes": a.max_shapes, "train_seconds": round(time.time() - t0, 1),
                                               "protocols": results})
        _print_table(_score_rows(f"{cfg.backbone}+{cfg.canonicalizer}", cfg.task, results), PROTOCOL_CHOICES)
    return 0


def cmd_train(a) -> int:
    from .cliconfig import build_train_parser, config_from_args, normalise_argv

    args = build_train_parser().parse_args(normalise_argv(a.rest))
    return run_training(config_from_args(args), args)


def cmd_adapt(a) -> int:
    import dataclasses

    from .cliconfig import build_train_parser, config_from_args, normalise_argv
    from .config import TrainConfig
    from .core.io import load_checkpoint
    from .train import DEFAULT_PRIOR

    parser = build_train_parser("pointcanon adapt", adapt=True)
    argv = normalise_argv(a.rest)
    args = parser.parse_args(argv)  # every value checked before the checkpoint is read
    src = TrainConfig.from_checkpoint(load_checkpoint(args.pretrained), args.pretrained)
    parser.set_defaults(data_root=src.data_root)  # the pretrained run's unless given
    args = parser.parse_args(argv)
    prior = DEFAULT_PRIOR[src.train_rotation] if args.prior == "auto" else args.prior
    cfg = config_from_args(args, dataclasses.replace(src, pretrained=str(args.pretrained), canonicalizer_kwargs={},
                                                     freeze_backbone=not args.finetune_backbone))
    if cfg.epochs == 0 and not cfg.canonicalizer_weights:
        raise ValueError("--epochs 0 would save an untrained canonicalizer: give trained ones with "
                         "--canonicalizer-weights FILE (or 'shipped'), or train with --epochs >= 1")
    frozen = cfg.freeze_canonicalizer
    cfg = dataclasses.replace(cfg, prior="none" if frozen else prior,
                              prior_weight=cfg.prior_weight if prior != "none" and not frozen else 0.0)
    print(f"adapting {args.pretrained} ({src.backbone}, trained with rotation {src.train_rotation!r}); prior "
          f"{cfg.prior!r}, weight {cfg.prior_weight}; backbone {'fine-tuned' if args.finetune_backbone else 'frozen'}")
    return run_training(cfg, args)


def cmd_eval(a) -> int:
    from .cliconfig import check_int
    from .config import MAX_POINTS
    from .core.io import check_output_file, write_json
    from .models import load_model
    from .tasks import get_task
    from .train import evaluate

    if a.num_points is not None:
        check_int(a.num_points, "--num-points", 1, MAX_POINTS)
    if a.hypotheses is not None:
        from .nn.hypotheses import MAX_HYPOTHESES

        check_int(a.hypotheses, "--hypotheses", 1, MAX_HYPOTHESES, " (omit it to use the trained number)")
    out = Path(a.out if a.out else Path(a.checkpoint).with_suffix(".eval.json")).expanduser()
    if out.resolve() == Path(a.checkpoint).resolve():
        raise ValueError(f"--out {out} is the checkpoint being evaluated; write the JSON elsewhere")
    out = check_output_file(out, "--out", overwrite=a.overwrite)
    model, cfg, state = load_model(a.checkpoint)
    if a.hypotheses is not None or a.hypothesis_rule is not None:
        from .nn import CanonicalizedModel

        if not (isinstance(model, CanonicalizedModel) and cfg.canonicalizer == "candidate" and cfg.task == "cls"):
            raise ValueError(f"--hypotheses / --hypothesis-rule need a classifier with a candidate canonicalizer; "
                             f"{a.checkpoint} has canonicalizer {cfg.canonicalizer!r}, task {cfg.task!r}")
        rule = a.hypothesis_rule or cfg.hypothesis_rule
        model = CanonicalizedModel(model.canonicalizer, model.backbone, hypotheses=a.hypotheses or cfg.hypotheses,
                                   hypothesis_rule=rule, selector=model.selector if rule == "selector" else None).eval()
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
                     "hypothesis_rule": a.hypothesis_rule or cfg.hypothesis_rule,
                     "max_shapes": a.max_shapes, "protocols": results})
    print(f"wrote {out}")
    return 0


def cmd_fit_selector(a) -> int:
    from .selector import fit_selector_checkpoint

    info = fit_selector_checkpoint(a.checkpoint, a.out, a.hypotheses, epochs=a.epochs, seed=a.seed,
                                   max_shapes=a.max_shapes, progress=True, overwrite=a.overwrite)
    print(f"training-split accuracy over {info['hypotheses']} hypotheses: "
          + ", ".join(f"{r} {v:.2f} %" for r, v in info["train_accuracy"].items()))
    print(f"wrote {a.out} ({info['seconds']:.0f} s); evaluate it with: pointcanon eval {a.out}")
    return 0


def cmd_demo(a) -> int:
    from .core.io import check_output_dir
    from .demo import run_demo

    check_output_dir(a.out, "--out")  # before the training, not after it
    run_demo(a.out, seed=a.seed, quick=a.quick)
    return 0


def cmd_data(a) -> int:
    from .core.io import check_output_dir
    from .datasets.download import download_modelnet40

    check_output_dir(a.root, "--root")
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
                plot=a.plot, json_path=a.json, seed=a.seed, overwrite=a.overwrite)
    return 0


def cmd_canonicalize(a) -> int:
    from .cliconfig import check_int
    from .config import MAX_POINTS
    from .core.io import check_output_dir
    from .mesh import canonicalize_files

    check_int(a.num_points, "--num-points", 1, MAX_POINTS)
    check_int(a.seed, "--seed", 0, hint=" (numpy seeds are non-negative)")
    check_output_dir(a.out, "-o/--out")
    if a.threads is None:
        torch.set_num_threads(1)  # one small network call per file: thread hand-offs cost more than they save

    report = canonicalize_files(a.inputs, a.out, a.model, num_points=a.num_points, seed=a.seed, sampling=a.sampling,
                                render=a.render, progress=not a.no_progress, overwrite=a.overwrite)
    done, failed = len(report["files"]), len(report["errors"])
    print(f"canonicalized {done} of {done + failed} inputs into {a.out}; transforms in "
          f"{Path(a.out) / 'transforms.json'}" + (f"; {failed} failed (listed under 'errors')" if failed else ""))
    return 1 if failed else 0


def cmd_fit_canonicalizer(a) -> int:
    from .cli_fit import run_fit

    threads = ["--threads", str(a.threads)] if a.threads is not None else []  # the recipe's field; flags after win
    return run_fit(threads + a.rest)


# train, adapt and fit-canonicalizer: their own (jsonargparse) parsers, generated from TrainConfig
# (pointcanon.cliconfig) and FitConfig (pointcanon.cli_fit)
CONFIG_COMMANDS = {"train": "train a (canonicalized) classifier or part segmenter",
                   "adapt": "put a canonicalizer with a prior in front of a pretrained classifier",
                   "fit-canonicalizer": "train a canonicalizer with a prior alone and score it (recipes: configs/)"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pointcanon", description="Learned canonicalization for point clouds.")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    sub = p.add_subparsers(dest="command", required=True)

    from .cliconfig import rotation_type
    from .nn.wrapper import HYPOTHESIS_RULES

    commands = {"train": cmd_train, "adapt": cmd_adapt, "fit-canonicalizer": cmd_fit_canonicalizer}
    for name, what in CONFIG_COMMANDS.items():
        sub.add_parser(name, help=what, add_help=False).set_defaults(func=commands[name])

    e = sub.add_parser("eval", help="evaluate a checkpoint under rotation protocols")
    e.add_argument("checkpoint")
    e.add_argument("--protocols", nargs="+", type=rotation_type(PROTOCOL_CHOICES, "--protocols"),
                   default=list(PROTOCOL_CHOICES),
                   metavar="{upright,z,SO3}", help="test rotations (any case): none, random about z, random in SO(3)")
    e.add_argument("--dataset", choices=DATASET_CHOICES, default=None)
    e.add_argument("--data-root", default=None)
    e.add_argument("--num-points", type=int, default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="JSON file (default: CHECKPOINT.eval.json, next to it)")
    e.add_argument("--overwrite", action="store_true", help="replace the JSON file if it exists")
    e.add_argument("--max-shapes", type=int, default=None, help="evaluate on N test shapes, spread evenly")
    e.add_argument("--hypotheses", type=int, default=None, metavar="K",
                   help="evaluate a candidate-canonicalized classifier over its K most likely up hypotheses "
                        "(default: as trained)")
    e.add_argument("--hypothesis-rule", choices=HYPOTHESIS_RULES, default=None,
                   help="how the hypotheses are weighted (default: as trained); see `train --help`")
    e.set_defaults(func=cmd_eval)

    f = sub.add_parser("fit-selector", help="fit a learned hypothesis selector to a candidate-canonicalized classifier",
                       description="Fits, on the classifier's outputs over its K most likely up hypotheses on its "
                                   "training shapes, a small selector of the pose to believe; writes a new checkpoint "
                                   "(--hypothesis-rule selector; canonicalizer and backbone unchanged).")
    f.add_argument("checkpoint", help="a classifier trained with --canonicalizer candidate")
    f.add_argument("--hypotheses", type=int, default=None, metavar="K", help="2..6 (default: as trained, or 3)")
    f.add_argument("--epochs", type=int, default=30, help="passes of the selector's fit over the training outputs")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--max-shapes", type=int, default=None, help="use N training shapes, spread evenly (quick checks)")
    f.add_argument("--out", required=True, help="the new checkpoint file (then: pointcanon eval OUT)")
    f.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never the checkpoint read)")
    f.set_defaults(func=cmd_fit_selector)

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
    m.add_argument("--group", type=rotation_type(("SO3", "O3", "z"), "--group"), default="SO3", metavar="{SO3,O3,z}",
                   help="the rotations to measure under (any case)")
    m.add_argument("--num-shapes", type=int, default=32, help="test shapes, spread over the test set")
    m.add_argument("--num-samples", type=int, default=4, help="random group elements")
    m.add_argument("--points", default=None, help="measure on these clouds instead: .npy or .pt array (B, N, 3)")
    m.add_argument("--dataset", choices=CLS_DATASETS, default=None, help="default: the checkpoint's")
    m.add_argument("--data-root", default=None)
    m.add_argument("--layers", nargs="+", default=None, help="layer names (default: every layer)")
    m.add_argument("--exact", action="store_true", help="zero the fixed inputs of an approximate canonicalizer")
    m.add_argument("--float32", action="store_true", help="measure in float32 (default float64)")
    m.add_argument("--plot", default=None, help="PNG (default: CHECKPOINT.measure.png)")
    m.add_argument("--json", default=None, help="JSON (default: CHECKPOINT.measure.json)")
    m.add_argument("--overwrite", action="store_true", help="replace the plot and JSON files if they exist")
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
    c.add_argument("--overwrite", action="store_true", help="replace outputs already in OUT (never an input)")
    c.set_defaults(func=cmd_canonicalize)

    from .cli_classify import add_classify_parser

    add_classify_parser(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    at = next((i for i, t in enumerate(argv) if not t.startswith("-") and (i == 0 or argv[i - 1] != "--threads")), None)
    split = at is not None and argv[at] in CONFIG_COMMANDS  # the rest goes to the command's own parser
    args = build_parser().parse_args(argv[:at + 1] if split else argv)
    args.rest = argv[at + 1:] if split else []
    try:
        if args.threads is not None:
            from .cliconfig import check_int

            check_int(args.threads, "--threads")
            torch.set_num_threads(args.threads)
        return args.func(args)
    except KeyboardInterrupt:
        print(f"pointcanon {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"pointcanon {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ArgumentError as e:  # train / adapt: the library's message, in the documented flag names
        from .cliconfig import documented

        print(f"pointcanon {args.command}: error: {documented(' '.join(str(e).split()))}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # training diverged
        print(f"pointcanon {args.command}: error: training diverged ({e}); lower --lr (or --prior-weight) and "
              "start again", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
