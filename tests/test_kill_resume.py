"""A training process killed with SIGKILL mid-epoch resumes to the same weights and metrics."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pointcanon.core.io import load_checkpoint

KIT = Path(__file__).with_name("trainkit.py")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(KIT), str(out)])
    deadline = time.time() + 120
    state = None
    while time.time() < deadline and proc.poll() is None:
        if (out / "last.pt").exists():
            state = load_checkpoint(out / "last.pt")  # never half-written: always loadable
            if state["epoch"] >= 1 and state["step"] > 0:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(out / "last.pt")
    assert killed_at["epoch"] < 4
    subprocess.run([sys.executable, str(KIT), str(out)], check=True)  # resumes from last.pt
    resumed = load_checkpoint(out / "last.pt")
    subprocess.run([sys.executable, str(KIT), str(tmp_path / "full")], check=True)  # same threads, uninterrupted
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert len(full["history"]) == 4
    assert strip(resumed["history"]) == strip(full["history"])
    for name, value in full["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
