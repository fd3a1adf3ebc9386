"""nda_plugins.adapters.lightly_moco: the loss against a slow reference and against lightly's own,
the queue checkpoint, NDA views, exact resume, the CLI and a 2-process torchrun run on CPU."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightly")
pytest.importorskip("torchvision")

from lightly.loss import NTXentLoss  # noqa: E402

from nda_plugins.adapters.lightly_moco.data import ImageData, batch_indices, embedded, image_folder  # noqa: E402
from nda_plugins.adapters.lightly_moco.loss import NDANTXentLoss  # noqa: E402
from nda_plugins.adapters.lightly_moco.nda import NDAViews, parse_transforms  # noqa: E402
from nda_plugins.adapters.lightly_moco.training import MoCoTrainer, TrainConfig  # noqa: E402


# ------------------------------------------------------------------------------------------
# The loss
# ------------------------------------------------------------------------------------------


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def reference_moco_nda(query, key, queue, nda, *, temperature, w):
    """Mean MoCo loss with NDA keys, written from the formula one term at a time (floats).

    queue: (K, D) rows, used as stored (the bank holds normalised keys); nda: per-query lists
    of NDA keys or None; w: their weight.
    """
    total = 0.0
    for i, q in enumerate(query.tolist()):
        q = _unit(q)
        pos = math.exp(_dot(q, _unit(key[i].tolist())) / temperature)
        denom = pos + sum(math.exp(_dot(q, k) / temperature) for k in queue.tolist())
        if nda is not None:
            denom += w * sum(math.exp(_dot(q, _unit(k)) / temperature) for k in nda[i].tolist())
        total += -math.log(pos / denom)
    return total / len(query)


def _pair(seed, *, b=5, d=6, k=11, m=3):
    torch.manual_seed(seed)
    loss = NDANTXentLoss(0.2, (k, d)).double()
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64, requires_grad=True)
    key = torch.randn(b, d, generator=g, dtype=torch.float64)
    nda = torch.randn(b, m, d, generator=g, dtype=torch.float64)
    return loss, q, key, nda


@pytest.mark.parametrize("w", [1.0, 0.5, 0.05])
def test_loss_matches_reference_and_never_enqueues_nda_keys(w):
    loss_fn, q, key, nda = _pair(0)
    queue = loss_fn.memory_bank.bank.clone()                       # (K, D) before the step
    got = loss_fn(q, key, nda_keys=nda, nda_weight=w)
    expected = reference_moco_nda(q.detach(), key, queue, nda, temperature=0.2, w=w)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # The positive keys (normalised) and only they were enqueued at the pointer.
    bank = loss_fn.memory_bank.bank
    assert torch.allclose(bank[:5], torch.nn.functional.normalize(key, dim=1), atol=1e-12)
    assert torch.equal(bank[5:], queue[5:])
    assert int(loss_fn.memory_bank.bank_ptr) == 5
    got.backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_nda_keys_raise_the_loss():
    loss_fn, q, key, nda = _pair(1)
    plain = NDANTXentLoss(0.2, (11, 6)).double()
    plain.memory_bank.bank.copy_(loss_fn.memory_bank.bank)
    assert loss_fn(q, key, nda_keys=nda, nda_weight=0.5) > plain(q, key)


@pytest.mark.parametrize("how", ["no_keys", "zero_weight"])
def test_without_nda_it_is_lightlys_ntxent_exactly(how):
    torch.manual_seed(3)
    ours = NDANTXentLoss(0.2, (32, 8))
    torch.manual_seed(3)
    theirs = NTXentLoss(temperature=0.2, memory_bank_size=(32, 8))
    assert torch.equal(ours.memory_bank.bank, theirs.memory_bank.bank)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # several steps: the queues must stay identical too
        q = torch.randn(6, 8, generator=g, requires_grad=True)
        k = torch.randn(6, 8, generator=g)
        kwargs = {} if how == "no_keys" else {"nda_keys": torch.randn(6, 2, 8, generator=g), "nda_weight": 0.0}
        a, b = ours(q, k, **kwargs), theirs(q, k)
        assert torch.equal(a, b)
    assert torch.equal(ours.memory_bank.bank, theirs.memory_bank.bank)
    assert torch.equal(ours.memory_bank.bank_ptr, theirs.memory_bank.bank_ptr)


def test_loss_errors():
    loss_fn, q, key, nda = _pair(2)
    with pytest.raises(ValueError, match="nda_weight must be in"):
        loss_fn(q, key, nda_keys=nda, nda_weight=1.5)
    with pytest.raises(ValueError, match=r"nda_keys must be a \(B=5, M, D\)"):
        loss_fn(q, key, nda_keys=nda[:2], nda_weight=0.5)
    with pytest.raises(ValueError, match="need a memory bank"):
        NDANTXentLoss(0.2, 0)(q, key, nda_keys=nda, nda_weight=0.5)
    with pytest.raises(ValueError, match="temperature"):
        NDANTXentLoss(0.0, (4, 2))


def test_queue_round_trips_through_state_dict():
    loss_fn, q, key, nda = _pair(4)
    loss_fn(q, key, nda_keys=nda, nda_weight=0.5)
    # lightly alone drops the queue from state_dict (non-persistent buffers): why this exists.
    assert not any("bank" in k for k in NTXentLoss(memory_bank_size=(11, 6)).state_dict())
    buf = io.BytesIO()
    torch.save(loss_fn.state_dict(), buf)
    buf.seek(0)
    fresh = NDANTXentLoss(0.2, (11, 6)).double()
    assert not torch.equal(fresh.memory_bank.bank, loss_fn.memory_bank.bank)
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    assert torch.equal(fresh.memory_bank.bank, loss_fn.memory_bank.bank)
    assert torch.equal(fresh.memory_bank.bank_ptr, loss_fn.memory_bank.bank_ptr)
    # A queue of another size is refused and nothing changes.
    other = NDANTXentLoss(0.2, (12, 6))
    before = other.memory_bank.bank.clone()
    with pytest.raises(ValueError, match=r"bank must have shape \(12, 6\)"):
        other.load_state_dict(loss_fn.state_dict())
    assert torch.equal(other.memory_bank.bank, before)


# ------------------------------------------------------------------------------------------
# NDA views
# ------------------------------------------------------------------------------------------


def test_nda_views_shape_differ_from_source_and_resume():
    x = torch.rand(6, 3, 16, 16)
    nda = NDAViews("jigsaw", weight=0.5, views=2, seed=1)
    v = nda.views(x, step=0)
    assert v.shape == (2, 6, 3, 16, 16)
    assert not (v == x).flatten(2).all(dim=2).any()  # no view equals its source image
    assert nda.weight(0) == 0.5
    state = nda.state_dict()
    after = nda.views(x, step=1)
    again = NDAViews("jigsaw", weight=0.5, views=2, seed=1)
    again.load_state_dict(state)
    assert torch.equal(again.views(x, step=1), after)
    with pytest.raises(ValueError, match="resume with the same --nda"):
        NDAViews("jigsaw+stitch", views=2).load_state_dict(state)


def test_transform_mix_is_drawn_per_batch_from_the_step():
    nda = NDAViews("jigsaw+cutout+stitch", seed=3)
    picks = [nda.pick(s) for s in range(60)]
    assert set(picks) == {0, 1, 2}
    assert picks == [NDAViews("jigsaw+cutout+stitch", seed=3).pick(s) for s in range(60)]
    assert nda.report(0)["NDA/transform"] == nda.specs[picks[0]]
    assert parse_transforms(" jigsaw:grid=3 + stitch ") == ["jigsaw:grid=3", "stitch"]
    with pytest.raises(ValueError, match="--nda"):
        parse_transforms("jigsaw++stitch")


def test_schedule_shapes_w():
    nda = NDAViews("jigsaw", weight=0.6, schedule="linear:steps=10")
    assert [nda.weight(s) for s in (0, 5, 10)] == pytest.approx([0.0, 0.3, 0.6])


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


def test_batch_indices_cover_an_epoch_split_over_ranks():
    kw = dict(n=20, batch_size=8, seed=0)
    epoch = torch.cat([batch_indices(s, **kw) for s in range(2)])
    assert len(set(epoch.tolist())) == 16
    split = torch.cat([batch_indices(1, rank=r, world_size=2, **kw) for r in range(2)])
    assert torch.equal(split, batch_indices(1, **kw))
    with pytest.raises(ValueError, match="divisible"):
        batch_indices(0, n=20, batch_size=7, seed=0, world_size=2)


def test_image_folder(tmp_path):
    from nda_plugins._png import write_png

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            write_png(tmp_path / c / f"{i}.png", torch.randint(0, 255, (20, 24, 3), dtype=torch.uint8))
    data = image_folder(tmp_path, size=16, test_fraction=0.2)
    assert data.train_x.shape == (8, 3, 16, 16) and data.test_x.shape == (2, 3, 16, 16)
    assert data.classes == ["a", "b"] and data.train_x.min() >= -1 and data.train_x.max() <= 1
    with pytest.raises(ValueError, match="--data"):
        image_folder(tmp_path / "missing")


# ------------------------------------------------------------------------------------------
# Training, checkpoints, evaluation
# ------------------------------------------------------------------------------------------


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_check.sh runs these)")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def _tiny(nda="jigsaw", **kw) -> TrainConfig:
    base = dict(steps=4, batch_size=16, queue=40, width=8, hidden_dim=16, out_dim=8, nda=nda, nda_weight=0.5)
    return TrainConfig(**(base | kw))


@pytest.fixture(scope="module")
def tiny_data() -> ImageData:
    return embedded(4, 2, size=16, seed=0)


@pytest.mark.parametrize("device", DEVICES)
def test_training_steps_end_to_end(tiny_data, device):
    t = MoCoTrainer(tiny_data, _tiny(), device=device)
    assert all(p.device.type == device for p in t.model.parameters())
    assert t.criterion.memory_bank.bank.device.type == device
    before = [p.detach().clone() for p in t.model.backbone.parameters()]
    key_before = [p.detach().clone() for p in t.model.backbone_momentum.parameters()]
    losses = t.train(progress=False)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.backbone.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(key_before, t.model.backbone_momentum.parameters()))
    # Only positive keys enter the queue: 16 per step; lightly wraps at 40 (0, 16, 32, 0, 16).
    assert int(t.criterion.memory_bank.bank_ptr) == 16
    assert t.nda.sessions[0].num_advances == 4
    ev = t.evaluate(probe_steps=20)
    assert 0 <= ev["knn_top1"] <= 1 and 0 <= ev["linear_top1"] <= 1
    assert len(ev["jigsaw_distances"]["embedding"]) == len(tiny_data.test_x)


def test_keys_do_not_depend_on_the_rest_of_the_key_batch():
    # The trainer encodes NDA views apart from the positive keys (cheaper on CPU); with
    # per-sample normalisation that gives the keys a joint batch would.
    from nda_plugins.adapters.lightly_moco.model import MoCoV2

    torch.manual_seed(0)
    model = MoCoV2(width=8, hidden_dim=16, out_dim=8)
    a, b = torch.rand(6, 3, 16, 16), torch.rand(6, 3, 16, 16)
    joint = model.forward_momentum(torch.cat([a, b]))
    torch.testing.assert_close(joint, torch.cat([model.forward_momentum(a), model.forward_momentum(b)]))


def test_queue_pointer_advances_by_positive_keys_only(tiny_data):
    t = MoCoTrainer(tiny_data, _tiny(queue=64, nda_views=2))
    t.train(until=2, progress=False)
    assert int(t.criterion.memory_bank.bank_ptr) == 2 * 16  # NDA keys (2 x 16 per step) never enqueued


def _snapshot(t: MoCoTrainer) -> dict:
    return {"model": {k: v.clone() for k, v in t.model.state_dict().items()},
            "bank": t.criterion.memory_bank.bank.clone(), "ptr": t.criterion.memory_bank.bank_ptr.clone(),
            "opt": [s["momentum_buffer"].clone() for s in t.optimizer.state.values()]}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("nda", ["jigsaw+cutout", None])
def test_resume_is_exact(tiny_data, tmp_path, nda, device, monkeypatch):
    if device == "cuda":  # bit-exact on CUDA needs deterministic kernels
        monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    full = MoCoTrainer(tiny_data, _tiny(nda), device=device)
    full.train(progress=False)
    first = MoCoTrainer(tiny_data, _tiny(nda), device=device)
    first.train(until=2, checkpoint=tmp_path / "c.pt", progress=False)
    resumed = MoCoTrainer(tiny_data, _tiny(nda), device=device)
    resumed.load(tmp_path / "c.pt")
    assert resumed.step == 2
    resumed.train(progress=False)
    a, b = _snapshot(full), _snapshot(resumed)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["bank"], b["bank"]) and torch.equal(a["ptr"], b["ptr"])
    assert all(torch.equal(x, y) for x, y in zip(a["opt"], b["opt"]))
    assert a["bank"].device.type == device


def test_resume_continues_the_nda_schedule(tiny_data, tmp_path):
    cfg = _tiny(nda_schedule="linear:steps=4", nda_weight=0.8)
    full = MoCoTrainer(tiny_data, cfg)
    full_w = [full.train_step()["nda_weight"] for _ in range(4)]
    first = MoCoTrainer(tiny_data, cfg)
    first.train(until=2, checkpoint=tmp_path / "c.pt", progress=False)
    resumed = MoCoTrainer(tiny_data, cfg)
    resumed.load(tmp_path / "c.pt")
    resumed_w = [resumed.train_step()["nda_weight"] for _ in range(2)]
    assert full_w == pytest.approx([0.0, 0.2, 0.4, 0.6]) and resumed_w == pytest.approx(full_w[2:])
    assert resumed.nda.sessions[0].num_advances == 4


def test_progress_bar_on_stderr(tiny_data, capsys):
    MoCoTrainer(tiny_data, _tiny()).train(progress=True, desc="moco+nda")
    err = capsys.readouterr().err
    assert "moco+nda" in err and "4/4" in err and "w=0.50" in err
    MoCoTrainer(tiny_data, _tiny()).train(progress=False)
    assert capsys.readouterr().err == ""


def test_resume_refuses_other_settings(tiny_data, tmp_path):
    t = MoCoTrainer(tiny_data, _tiny())
    t.train(until=1, checkpoint=tmp_path / "c.pt", progress=False)
    other = MoCoTrainer(tiny_data, _tiny(nda_weight=0.25))
    before = _snapshot(other)
    with pytest.raises(ValueError, match="--nda-weight: checkpoint 0.5, now 0.25"):
        other.load(tmp_path / "c.pt")
    after = _snapshot(other)
    assert other.step == 0 and all(torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    with pytest.raises(ValueError, match="--resume"):
        other.load(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------

_TINY_ARGS = ["--steps", "3", "--batch-size", "16", "--queue", "40", "--width", "8", "--hidden-dim", "16",
              "--out-dim", "8", "--train-per-class", "4", "--test-per-class", "2", "--image-size", "16",
              "--probe-steps", "10", "--no-progress"]


@pytest.mark.parametrize("device", DEVICES)
def test_cli_compare_writes_json_table_and_plot(tmp_path, capsys, device):
    import json

    from nda_plugins.adapters.lightly_moco.train import run

    folder = run([*_TINY_ARGS, "--compare", "--nda", "jigsaw", "--device", device, "--out", str(tmp_path / "out")])
    summary = json.loads((folder / "results.json").read_text())
    assert set(summary["runs"]) == {"baseline", "nda (jigsaw)"}
    assert summary["runs"]["baseline"]["config"]["nda"] is None
    assert {k: v for k, v in summary["runs"]["baseline"]["config"].items() if not k.startswith("nda")} == {
        k: v for k, v in summary["runs"]["nda (jigsaw)"]["config"].items() if not k.startswith("nda")}
    assert "| baseline |" in (folder / "results.md").read_text()
    assert (folder / "fig9.png").stat().st_size > 1000
    assert (folder / "nda" / "checkpoint.pt").is_file() and (folder / "baseline" / "metrics.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--compare"], "--compare needs --nda"),
    (["--nda-weight", "1.0"], "--nda-weight must be in"),
    (["--nda", "nosuch"], "nosuch"),
    (["--batch-size", "7", "--stop-at", "9"], "--stop-at must be in"),
])
def test_cli_errors_are_usage_errors(argv, message, tmp_path, capsys):
    from nda_plugins.adapters.lightly_moco.train import run

    with pytest.raises(SystemExit) as exc:
        run([*_TINY_ARGS, "--out", str(tmp_path / "o"), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------
# torchrun --nproc_per_node=2 on CPU (gloo): trains, resumes exactly
# ------------------------------------------------------------------------------------------


def _torchrun(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    # --standalone picks a free port through its own rendezvous; "--master_port=0" hangs in
    # init_process_group on torch 2.14 (the workers never learn the port the agent bound).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "nda_plugins.adapters.lightly_moco.train", *_TINY_ARGS, "--nda", "jigsaw", "--no-eval", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_torchrun_two_processes_train_and_resume(tmp_path):
    _torchrun(["--steps", "4", "--out", str(tmp_path / "full")], tmp_path)
    _torchrun(["--steps", "4", "--stop-at", "2", "--out", str(tmp_path / "part")], tmp_path)
    half = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert half["step"] == 2 and half["world_size"] == 2
    _torchrun(["--steps", "4", "--resume", str(tmp_path / "part" / "checkpoint.pt")], tmp_path)
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert resumed["step"] == full["step"] == 4
    assert all(torch.equal(full["model"][k], resumed["model"][k]) for k in full["model"])
    for r in range(2):
        a, b = full["ranks"][r], resumed["ranks"][r]
        assert torch.equal(a["criterion"]["_extra_state"]["bank"], b["criterion"]["_extra_state"]["bank"])
        assert a["nda"]["sessions"][0]["nda_plugins.session"]["num_advances"] == 4
    # gather_distributed: each rank enqueued both ranks' 8 keys per step, so the queues agree
    # and advanced as one 16-key batch would (0, 16, 32, 0, 16)...
    bank0, bank1 = (full["ranks"][r]["criterion"]["_extra_state"] for r in range(2))
    assert torch.equal(bank0["bank"], bank1["bank"]) and int(bank0["bank_ptr"]) == int(bank1["bank_ptr"]) == 16
    # ...while each rank drew its own NDA views.
    g0, g1 = (full["ranks"][r]["nda"]["sessions"][0]["nda_plugins.session"]["generator"]["state"] for r in range(2))
    assert not torch.equal(g0, g1)


# ------------------------------------------------------------------------------------------
# The launch script
# ------------------------------------------------------------------------------------------

_SCRIPT = Path(__file__).resolve().parents[1] / "adapters" / "lightly_moco" / "train.sh"


def _script(tmp_path, *args):
    # Stand-ins for python and torchrun that print how they were called: the script's dispatch
    # is what is tested here (the trainer itself is run by the CLI and torchrun tests).
    for name in ("python", "torchrun"):
        stub = tmp_path / name
        stub.write_text(f'#!/usr/bin/env bash\necho "{name} $*"\n')
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(["bash", str(_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_launch_script_dispatches_to_python_or_torchrun(tmp_path):
    proc = _script(tmp_path, "1", "--compare", "--nda", "jigsaw")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "python -m nda_plugins.adapters.lightly_moco.train --compare --nda jigsaw"
    proc = _script(tmp_path, "2", "--nda", "jigsaw+stitch")
    assert proc.stdout.strip() == (
        "torchrun --standalone --nproc_per_node=2 -m nda_plugins.adapters.lightly_moco.train --nda jigsaw+stitch")
    for bad in ("two", "0"):
        proc = _script(tmp_path, bad)
        assert proc.returncode == 2 and f"NPROC must be a positive integer, got '{bad}'" in proc.stderr
