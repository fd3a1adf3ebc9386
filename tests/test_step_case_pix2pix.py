"""benchmarks/step_cases/pix2pix.py builds working closures (no timing here)."""

from __future__ import annotations

import pytest
import torch

@pytest.fixture(scope="module")
def case(load_benchmark):
    return load_benchmark("step_cases/pix2pix.py", "step_case_pix2pix")


def test_interface(case):
    assert case.NAME == "pix2pix" and set(case.VARIANTS) == {"weighted", "replace"}
    assert case.skip_reason() is None
    with pytest.raises(ValueError, match="variant"):
        case.build("anda", torch.device("cpu"))


@pytest.mark.parametrize("variant", [None, "weighted", "replace"])
def test_step_trains_d(case, variant, monkeypatch):
    monkeypatch.delenv("NDA_UPSTREAM_PIX2PIX", raising=False)
    built = case.build(variant, torch.device("cpu"))
    assert ("fake_d_pass" in built) == (variant is None)
    fns = built["step"].__closure__
    model = next(c.cell_contents for c in fns if hasattr(c.cell_contents, "netD"))
    before = [p.detach().clone() for p in model.netD.parameters()]
    built["step"]()
    built["step"]()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.netD.parameters()))
    if variant is not None:
        assert model.nda.num_advances == 2 and model.nda.mode == variant
    else:
        built["fake_d_pass"]()
