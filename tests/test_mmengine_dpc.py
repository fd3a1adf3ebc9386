"""nda_plugins.mmengine: the registry, NDAHook, DPC, the video datasets, resume and CPU distributed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("mmengine")

from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import MODELS as MM_MODELS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from nda_plugins import NDASession  # noqa: E402
from nda_plugins.mmengine import compat  # noqa: E402, F401  (installs the checkpoint loader)
from nda_plugins.mmengine.dpc import DPC  # noqa: E402
from nda_plugins.mmengine.hooks import CHECKPOINT_KEY, NDAHook  # noqa: E402
from nda_plugins.mmengine.video_data import MOTIONS, MovingShapesVideo, VideoFolder  # noqa: E402

NDA = dict(transform="jigsaw:grid=2", weight=0.5, seed=3)
SMALL = dict(num_blocks=4, pred_steps=2, dim=16, width=8)


def _clips(n=4, seed=0):
    data = MovingShapesVideo(num_clips=n, frames=8, size=16, seed=seed)
    return torch.stack([data[i]["inputs"] for i in range(n)])


# ---------------------------------------------------------------------------- dataset


def test_moving_shapes_is_deterministic_and_labelled():
    a, b = MovingShapesVideo(12, frames=8, size=16), MovingShapesVideo(12, frames=8, size=16)
    item = a[5]
    assert item["inputs"].shape == (3, 8, 16, 16) and item["labels"].item() == 5 % len(MOTIONS)
    assert torch.equal(item["inputs"], b[5]["inputs"])
    assert not torch.equal(item["inputs"], MovingShapesVideo(12, frames=8, size=16, seed=1)[5]["inputs"])
    # the shape moves: consecutive frames differ
    assert not torch.equal(item["inputs"][:, 0], item["inputs"][:, 1])


@pytest.mark.parametrize("kwargs", [dict(num_clips=0), dict(frames=0), dict(size=4), dict(num_classes=7)])
def test_moving_shapes_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        MovingShapesVideo(**kwargs)


def test_video_folder_reads_clips(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        torch.save(torch.randint(0, 255, (10, 16, 16, 3), dtype=torch.uint8), tmp_path / cls / "c0.pt")
    data = VideoFolder(str(tmp_path), frames=8)
    assert len(data) == 2 and data.metainfo["classes"] == ("a", "b")
    assert data[1]["inputs"].shape == (3, 8, 16, 16) and data[1]["labels"].item() == 1
    with pytest.raises(ValueError, match="root"):
        VideoFolder(str(tmp_path / "missing"))


# ---------------------------------------------------------------------------- model


def test_dpc_builds_from_the_nda_plugins_scope():
    model = MM_MODELS.build(dict(type="nda_plugins.DPC", **SMALL, nda=NDA))
    assert isinstance(model, DPC) and isinstance(model.nda_session, NDASession)


def test_dpc_loss_uses_nda_keys_only_with_positive_weight():
    x = _clips()
    torch.manual_seed(0)
    plain = DPC(**SMALL)
    torch.manual_seed(0)
    nda = DPC(**SMALL, nda=NDA)
    plain.train(), nda.train()
    base = plain(x, mode="loss")["loss_dpc"]
    with_nda = nda(x, mode="loss")["loss_dpc"]
    assert torch.isfinite(with_nda) and with_nda > base  # an extra negative raises InfoNCE
    nda.nda_weight = 0.0
    assert torch.allclose(nda(x, mode="loss")["loss_dpc"], base)
    with_nda.backward()
    assert all(p.grad is not None for p in nda.encoder.parameters())
    assert nda(x, mode="tensor").shape == (4, SMALL["dim"])


def test_dpc_rejects_bad_inputs():
    with pytest.raises(ValueError, match="pred_steps"):
        DPC(num_blocks=2, pred_steps=2)
    with pytest.raises(TypeError, match="nda"):
        DPC(nda="jigsaw")
    with pytest.raises(ValueError, match="divisible"):
        DPC(**SMALL)(torch.rand(2, 3, 6, 16, 16), mode="loss")
    with pytest.raises(ValueError, match="mode"):
        DPC(**SMALL)(torch.rand(2, 3, 8, 16, 16), mode="bogus")


# ---------------------------------------------------------------------------- runner


def _cfg(work_dir, epochs=2, nda=NDA, model=None):
    return dict(
        model=model or dict(type="nda_plugins.DPC", **SMALL, nda=nda),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type="nda_plugins.MovingShapesVideo", num_clips=8, frames=8, size=16),
            sampler=dict(type="DefaultSampler", shuffle=True),
            collate_fn=dict(type="default_collate"),
            batch_size=4,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        optim_wrapper=dict(optimizer=dict(type="Adam", lr=1e-3)),
        custom_hooks=[dict(type="nda_plugins.NDAHook")],
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1), logger=dict(type="LoggerHook", interval=1)),
        randomness=dict(seed=0),
        default_scope="mmengine",
        experiment_name=f"t{abs(hash(str(work_dir)))}_{epochs}",
    )


def test_runner_trains_logs_and_checkpoints_nda_state(tmp_path):
    runner = Runner.from_cfg(_cfg(tmp_path, epochs=1))
    runner.train()
    hub = runner.message_hub
    assert hub.get_scalar("train/nda_weight").current() == 0.5
    assert "train/nda_key_sim" in hub.log_scalars
    ckpt = torch.load(tmp_path / "epoch_1.pth", weights_only=False)
    assert CHECKPOINT_KEY in ckpt and ckpt[CHECKPOINT_KEY]


def test_resume_continues_exactly(tmp_path):
    straight = Runner.from_cfg(_cfg(tmp_path / "a", epochs=2))
    straight.train()
    first = Runner.from_cfg(_cfg(tmp_path / "b", epochs=1))
    first.train()
    del first
    resumed = Runner.from_cfg({**_cfg(tmp_path / "b", epochs=2), "resume": True})
    resumed.train()
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    state_a = straight.model.nda_session.state_dict()
    state_b = resumed.model.nda_session.state_dict()
    (key,) = state_a
    assert state_a[key]["num_advances"] == state_b[key]["num_advances"] == 4
    assert torch.equal(state_a[key]["generator"]["state"], state_b[key]["generator"]["state"])


class _Toy(BaseModel):
    """Any model following the NDAHook protocol."""

    def __init__(self, nda=True):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.nda_session = NDASession(transform="cutout", weight=0.25, schedule="linear:steps=4") if nda else None
        self.seen = []

    def forward(self, inputs, labels=None, mode="tensor"):
        self.seen.append(getattr(self, "nda_weight", None))
        return {"loss": self.lin(inputs.mean(dim=(2, 3, 4))).pow(2).mean()}


def test_nda_hook_drives_any_model_and_refuses_models_without_a_session(tmp_path):
    MM_MODELS.register_module(module=_Toy, force=True)
    runner = Runner.from_cfg(_cfg(tmp_path / "toy", epochs=2, model=dict(type="_Toy")))
    runner.train()
    assert runner.model.seen == pytest.approx([0.0, 0.0625, 0.125, 0.1875])
    assert runner.model.nda_session.num_advances == 4
    bad = SimpleNamespace(model=torch.nn.Linear(1, 1), iter=0)
    with pytest.raises(TypeError, match="nda_session"):
        NDAHook().before_train_iter(bad, 0)


# ---------------------------------------------------------------------------- distributed


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_trains_and_resumes(tmp_path):
    from nda_plugins.adapters.mmengine_dpc import config_path

    cfg = tmp_path / "tiny.py"
    cfg.write_text(
        f"_base_ = [{config_path('dpc_nda_moving_shapes')!r}]\n"
        "model = dict(dim=16, width=8)\n"
        "train_dataloader = dict(batch_size=4, dataset=dict(num_clips=16, size=16))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port (torchrun's --master-port=0 hangs here)
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={port}",
            "-m", "nda_plugins.adapters.mmengine_dpc.train", str(cfg), "--launcher", "pytorch",
            "--work-dir", str(tmp_path / "run")]
    for epochs, extra in ((1, []), (2, ["--resume"])):
        proc = subprocess.run(base + ["--max-epochs", str(epochs), *extra], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "epoch_2.pth").is_file()
    log = proc.stdout + proc.stderr
    assert "resumed epoch: 1" in log and "Distributed training: True" in log


# ---------------------------------------------------------------------------- step case (no timing here)


def test_step_case_steps_train_and_only_the_nda_variant_uses_negatives(monkeypatch, load_benchmark):
    case = load_benchmark("step_cases/mmengine_dpc.py", "step_case_mmengine_dpc")
    assert case.NAME == "mmengine_dpc" and case.skip_reason() is None
    with pytest.raises(ValueError, match="variant"):
        case.build("replace", torch.device("cpu"))
    calls = []
    original = NDASession.negatives
    monkeypatch.setattr(NDASession, "negatives", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    for variant, expected_calls in ((None, 0), ("weighted", 1)):
        calls.clear()
        built = case.build(variant, torch.device("cpu"))
        assert isinstance(built["model"], DPC)
        params = built["model"].encoder.net[0].weight
        before = params.detach().clone()
        built["step"]()
        assert len(calls) == expected_calls and not torch.equal(before, params)
    with pytest.raises(ValueError, match="repeats"):
        case.measure(repeats=0)


# ---------------------------------------------------------------------------- probe


@pytest.mark.slow
def test_probe_writes_json_table_and_plot_per_seed(tmp_path):
    from nda_plugins.adapters.mmengine_dpc import config_path, probe

    tiny = []
    for name in ("dpc_moving_shapes", "dpc_nda_moving_shapes"):
        path = tmp_path / f"{name}.py"
        path.write_text(f"_base_ = [{config_path(name)!r}]\nmodel = dict(dim=8, width=4)\n"
                        "train_dataloader = dict(batch_size=4, dataset=dict(num_clips=8, size=16))\n"
                        "default_hooks = dict(checkpoint=dict(interval=10))\n")
        tiny.append(str(path))
    res = probe.run(str(tmp_path / "out"), epochs=1, test_clips=6, seeds=(0, 1), configs=tuple(tiny))
    assert [(r["config"], r["seed"]) for r in res["runs"]] == [
        ("dpc_moving_shapes", 0), ("dpc_nda_moving_shapes", 0), ("untrained", 0),
        ("dpc_moving_shapes", 1), ("dpc_nda_moving_shapes", 1), ("untrained", 1)]
    assert [r["nda"] for r in res["summary"]] == [False, True, False] and all(r["n"] == 2 for r in res["summary"])
    for row in res["summary"]:
        tops = [r["top1"] for r in res["runs"] if r["config"] == row["config"]]
        assert row["mean_top1"] == pytest.approx(sum(tops) / 2) and all(0 <= t <= 1 for t in tops)
    saved = (tmp_path / "out" / "probe.json").read_text()
    assert '"summary"' in saved and "dpc_nda_moving_shapes | yes | 2" in (tmp_path / "out" / "probe.md").read_text()
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "out" / "probe.png").stat().st_size > 0
    with pytest.raises(ValueError, match="seeds"):
        probe.run(str(tmp_path / "bad"), seeds=())


def test_build_runner_seed_sets_training_and_nda_seeds(tmp_path):
    from nda_plugins.adapters.mmengine_dpc.train import build_runner

    with pytest.raises(ValueError, match="seed"):
        build_runner("dpc_nda_moving_shapes", work_dir=str(tmp_path), seed=-1)
    runner = build_runner("dpc_nda_moving_shapes", work_dir=str(tmp_path), seed=7, experiment_name="seed7")
    assert runner.cfg.randomness.seed == 7 and runner.cfg.model.nda.seed == 7
