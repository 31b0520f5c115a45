"""Data parallelism with torch.distributed (gloo, 2 CPU processes on loopback)."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from pointcanon.distributed import init_from_env, shutdown
from pointcanon.train import evaluate, train
from trainkit import Blobs, small_config


# no batch norm, no dropout: the only per-process parts of a training step
BACKBONE = {"width": 32, "input_transform": False, "dropout": 0.0, "batch_norm": False}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist = init_from_env()
    cfg = small_config(epochs=3, backbone_kwargs=BACKBONE)
    model, history = train(cfg, Blobs(n=96), Blobs(seed=9), out=out, progress=False, log=lambda s: None, dist=dist)
    acc = evaluate(model, Blobs(seed=9), dist=dist)["acc"]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save((rank, flat, history, acc), os.path.join(out, f"result{rank}.pt"))
    shutdown(dist)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(2, _free_port(), str(out)), nprocs=2, start_method="spawn")
    results = [torch.load(out / f"result{r}.pt", weights_only=False) for r in range(2)]
    return out, results


@pytest.mark.slow
def test_parameters_identical_across_ranks(two_process_run):
    _, ((_, p0, h0, a0), (_, p1, h1, a1)) = two_process_run
    assert torch.equal(p0, p1)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(h0) == strip(h1) and a0 == a1  # metrics are reduced over ranks: every rank reports the same


@pytest.mark.slow
def test_metrics_match_a_single_process_with_the_same_global_batch(two_process_run, tmp_path):
    out, ((_, params, history, acc), _) = two_process_run
    model, single = train(small_config(epochs=3, backbone_kwargs=BACKBONE), Blobs(n=96), Blobs(seed=9),
                          progress=False, log=lambda s: None)
    # Every global batch holds the same shapes with the same augmentation, and gradients are averaged
    # over ranks; without batch norm and dropout (per-process by nature) the runs agree to rounding
    # (gradient sums in a different order): tolerance 1e-4 on losses and weights.
    for a, b in zip(history, single):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
        assert a["train_acc"] == b["train_acc"]
    assert (params - torch.cat([p.detach().flatten() for p in model.parameters()])).abs().max() < 1e-4
    assert acc == evaluate(model, Blobs(seed=9))["acc"]
    assert (out / "last.pt").exists() and (out / "metrics.jsonl").read_text().count("\n") == 3
    assert not list(out.glob(".*tmp"))
