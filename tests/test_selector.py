"""The learned hypothesis selector: its inputs, its fit, and `pointcanon fit-selector` end to end.
(Its exact invariance inside a CanonicalizedModel is tested with the other rules in test_candidates.py.)"""
import json

import pytest
import torch

from pointcanon.nn import CandidateCanonicalizer, CanonicalizedModel, build_backbone
from pointcanon.nn.hypotheses import HypothesisSelector, combine_hypotheses
from pointcanon.selector import fit_selector, rule_accuracies


def _confusing_poses(n: int = 600, classes: int = 4, seed: int = 0):
    """Two hypotheses per shape, the canonicalizer undecided (weights 0.5 / 0.5). In the right pose the
    backbone predicts the true class moderately; in the wrong pose it is *more* sure (higher evidence) of
    class 0, as a z-trained backbone is of a shape on its side. Which pose is right is random."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(1, classes, (n,), generator=g)
    right = torch.randn(n, classes, generator=g) * 0.3
    right[torch.arange(n), y] += 2.0
    wrong = torch.randn(n, classes, generator=g) * 0.3
    wrong[:, 0] += 4.0
    first_right = torch.rand(n, generator=g) < 0.5
    logits = torch.where(first_right[:, None, None], torch.stack([right, wrong], 1), torch.stack([wrong, right], 1))
    return {"weights": torch.full((n, 2), 0.5), "logits": logits, "labels": y}


@pytest.mark.slow
def test_a_fitted_selector_learns_which_pose_to_believe():
    """Neither the canonicalizer's weights nor the backbone's evidence can pick the right pose here (the
    evidence prefers the wrong one); the selector, fitted on the class log-probabilities, can. Held-out
    shapes of the same kind show it generalises, and a seed fixes the fit."""
    train, test = _confusing_poses(seed=0), _confusing_poses(seed=1)
    selector = fit_selector(train["weights"], train["logits"], train["labels"], epochs=20, seed=0)
    acc = rule_accuracies(test, selector)
    assert acc["evidence"] < 10 and acc["weights"] < 60, acc
    assert acc["selector"] > 95, acc
    again = fit_selector(train["weights"], train["logits"], train["labels"], epochs=20, seed=0)
    for a, b in zip(selector.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_selector_output_is_a_distribution_and_inputs_are_checked():
    torch.manual_seed(0)
    sel = HypothesisSelector(5).double()
    w = torch.softmax(torch.randn(3, 4, dtype=torch.float64), -1)
    logits = torch.randn(3, 4, 5, dtype=torch.float64)
    q = sel(w, logits)
    assert q.shape == (3, 4) and torch.allclose(q.sum(-1), torch.ones(3, dtype=torch.float64))
    logp = combine_hypotheses(w, logits, "selector", sel)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="logits"):
        sel(w, logits[..., :4])
    with pytest.raises(ValueError, match="from 1 to 6"):
        HypothesisSelector(5)(torch.full((1, 7), 1 / 7), torch.randn(1, 7, 5))
    with pytest.raises(ValueError, match="positive int"):
        HypothesisSelector(0)
    with pytest.raises(ValueError, match="fit-selector"):
        combine_hypotheses(w, logits, "selector")
    with pytest.raises(ValueError, match="labels"):
        fit_selector(w.float(), logits.float(), torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="finite"):
        fit_selector(w.float(), logits.float().clone().fill_(float("nan")), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="go together"):
        CanonicalizedModel(CandidateCanonicalizer(), build_backbone("pointnet", 5), hypotheses=2,
                           hypothesis_rule="selector")
    with pytest.raises(ValueError, match="go together"):
        CanonicalizedModel(CandidateCanonicalizer(), build_backbone("pointnet", 5), hypotheses=2, selector=sel)


@pytest.mark.slow
def test_cli_fits_a_selector_and_evaluates_it(tmp_path, one_thread):
    """train (candidate, 2 hypotheses) -> fit-selector -> eval: the new checkpoint holds the selector,
    keeps the canonicalizer and backbone bit for bit, and is invariant (same accuracy in every protocol)."""
    from pointcanon.cli import main
    from pointcanon.models import load_model

    small = ["--dataset", "synthetic", "--num-points", "64", "--batch-size", "16", "--max-shapes", "48", "--epochs", "1"]
    run = tmp_path / "h"
    assert main(["train", *small, "--canonicalizer", "candidate", "--prior", "upright", "--prior-weight", "1",
                 "--hypotheses", "2", "--out", str(run)]) == 0
    fitted = tmp_path / "sel.pt"
    fitted.write_bytes(b"a user's file")  # an existing --out: refused before any work, replaced with --overwrite
    argv = ["fit-selector", str(run / "last.pt"), "--hypotheses", "3", "--max-shapes", "32", "--epochs", "2",
            "--out", str(fitted)]
    assert main(argv) == 2 and fitted.read_bytes() == b"a user's file"
    assert main(argv + ["--overwrite"]) == 0
    model, cfg, state = load_model(fitted)
    source, _, _ = load_model(run / "last.pt")
    assert cfg.hypothesis_rule == "selector" and cfg.hypotheses == 3 and model.selector is not None
    assert state["selector_fit"]["hypotheses"] == 3 and "selector" in state["selector_fit"]["train_accuracy"]
    for name, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    (tmp_path / "e.json").write_text("a user's file")
    assert main(["eval", str(fitted), "--max-shapes", "16", "--out", str(tmp_path / "e.json")]) == 2
    assert (tmp_path / "e.json").read_text() == "a user's file"
    assert main(["eval", str(fitted), "--max-shapes", "16", "--out", str(tmp_path / "e.json"), "--overwrite"]) == 0
    acc = json.loads((tmp_path / "e.json").read_text())
    assert acc["hypothesis_rule"] == "selector"
    assert acc["protocols"]["upright"]["acc"] == acc["protocols"]["z"]["acc"] == acc["protocols"]["SO3"]["acc"]
    # refusals: the input as output, a model without the selector asked to use it, training with it
    assert main(["fit-selector", str(fitted), "--out", str(fitted)]) == 2
    assert main(["fit-selector", str(fitted), "--out", str(fitted), "--overwrite"]) == 2
    assert main(["fit-selector", str(run / "last.pt"), "--epochs", "0", "--out", str(tmp_path / "e0.pt")]) == 2
    assert main(["fit-selector", str(run / "last.pt"), "--hypotheses", "7", "--out", str(tmp_path / "k7.pt")]) == 2
    assert not (tmp_path / "e0.pt").exists() and not (tmp_path / "k7.pt").exists()
    assert main(["eval", str(run / "last.pt"), "--hypothesis-rule", "selector", "--max-shapes", "8",
                 "--out", str(tmp_path / "x.json")]) == 2
    assert main(["train", *small, "--canonicalizer", "candidate", "--hypotheses", "2", "--hypothesis-rule", "selector",
                 "--out", str(tmp_path / "bad")]) == 2  # a selector is fitted afterwards, not trained
    assert not (tmp_path / "bad").exists()


def test_fit_selector_refuses_a_plain_classifier(tmp_path, one_thread):
    from pointcanon.cli import main

    assert main(["train", "--dataset", "synthetic", "--num-points", "32", "--batch-size", "8", "--max-shapes", "16",
                 "--epochs", "1", "--out", str(tmp_path / "p")]) == 0
    assert main(["fit-selector", str(tmp_path / "p" / "last.pt"), "--out", str(tmp_path / "s.pt")]) == 2
    assert not (tmp_path / "s.pt").exists()
