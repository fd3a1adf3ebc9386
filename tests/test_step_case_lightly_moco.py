"""benchmarks/step_cases/lightly_moco.py builds working closures (no timing here)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("lightly")
pytest.importorskip("torchvision")

@pytest.fixture(scope="module")
def case(load_benchmark):
    return load_benchmark("step_cases/lightly_moco.py", "step_case_lightly_moco")


def _trainer(fn):
    return next(c.cell_contents for c in fn.__closure__ if hasattr(c.cell_contents, "train_step"))


def test_interface(case):
    assert case.NAME == "lightly_moco" and case.VARIANTS == ("weighted",)
    assert case.skip_reason() is None
    with pytest.raises(ValueError, match="variant must be None or one of"):
        case.build("replace", torch.device("cpu"))


@pytest.mark.parametrize("variant", [None, "weighted"])
def test_each_closure_runs_once(case, variant):
    built = case.build(variant, torch.device("cpu"))
    assert set(built) == ({"step", "fake_d_pass"} if variant is None else {"step"})
    trainer = _trainer(built["step"])
    assert (trainer.nda is None) == (variant is None)
    before = [p.detach().clone() for p in trainer.model.backbone.parameters()]
    built["step"]()
    assert trainer.step == 1 and int(trainer.criterion.memory_bank.bank_ptr) == case.BATCH
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.backbone.parameters()))
    if variant is None:
        key_before = [p.detach().clone() for p in trainer.model.backbone_momentum.parameters()]
        built["fake_d_pass"]()  # no grad, no state change: only the key-encoder pass
        assert all(torch.equal(a, b) for a, b in zip(key_before, trainer.model.backbone_momentum.parameters()))
        assert trainer.step == 1
