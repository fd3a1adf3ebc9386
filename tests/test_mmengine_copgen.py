"""nda_plugins.mmengine.copgen through mmengine's Runner on CPU, and the COP-Gen launcher."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import torch

pytest.importorskip("mmengine")

from mmengine.runner import Runner  # noqa: E402

from nda_plugins import copgen  # noqa: E402
from nda_plugins.mmengine import copgen as mm_copgen  # noqa: E402
from nda_plugins.mmengine.compat import enable_full_checkpoint_loading  # noqa: E402

LATENT = 8


def navigator_cfg(work_dir, max_iters, **over):
    cfg = dict(
        model=dict(type="nda_plugins.COPGenNavigator", generator="tests.test_copgen:make_generator",
                   latent_dim=LATENT, estimator=dict(width=4, out_dim=8)),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=dict(type="nda_plugins.LatentDataset", num_samples=40, latent_dim=LATENT),
                              sampler=dict(type="DefaultSampler", shuffle=True), batch_size=4, num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(constructor="nda_plugins.SubmoduleOptimWrapperConstructor",
                           estimator=dict(optimizer=dict(type="Adam", lr=3e-4, betas=(0.5, 0.999))),
                           navigator=dict(optimizer=dict(type="Adam", lr=1e-3, betas=(0.5, 0.999)))),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
        randomness=dict(seed=0), default_scope="mmengine", log_level="WARNING",
        experiment_name=f"copgen-{uuid.uuid4().hex}",  # runners built in the same second stay apart
    )
    cfg.update(over)
    return cfg


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("mmengine").setLevel(logging.WARNING)


def test_navigator_runner_trains_and_logs_step_norm(tmp_path):
    runner = Runner(**navigator_cfg(tmp_path, 3))
    g0 = {k: v.clone() for k, v in runner.model.generator.state_dict().items()}
    runner.train()
    hub = runner.message_hub
    for key in ("loss_mi", "loss_navigator", "step_norm_mean", "step_norm_std"):
        assert torch.isfinite(torch.tensor(hub.get_scalar(f"train/{key}").current()))
    assert hub.get_scalar("train/loss_navigator").current() < 0
    assert all(torch.equal(v, runner.model.generator.state_dict()[k]) for k, v in g0.items())
    assert int(runner.model.iteration) == 3
    assert runner.optim_wrapper["navigator"].optimizer.param_groups[0]["lr"] == 1e-3


def test_navigator_resume_continues_exactly(tmp_path):
    enable_full_checkpoint_loading()
    straight = Runner(**navigator_cfg(tmp_path / "a", 4))
    straight.train()
    first = Runner(**navigator_cfg(tmp_path / "b", 2))
    first.train()
    resumed = Runner(**navigator_cfg(tmp_path / "b", 4, resume=True, experiment_name=f"resumed-{uuid.uuid4().hex}"))
    resumed.train()
    assert resumed.iter == 4
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # Not trivially equal: training moved the navigator.
    assert not torch.equal(first.model.state_dict()["cop.navigator.net.2.weight"], a["cop.navigator.net.2.weight"])


def test_submodule_constructor_names_missing_submodule(tmp_path):
    cfg = navigator_cfg(tmp_path, 1)
    cfg["optim_wrapper"] = dict(constructor="nda_plugins.SubmoduleOptimWrapperConstructor",
                                decoder=dict(optimizer=dict(type="Adam", lr=1e-3)))
    with pytest.raises(ValueError, match="no submodule 'decoder'"):
        Runner(**cfg).train()


def test_latent_dataset_fixed_per_index():
    ds = mm_copgen.LatentDataset(num_samples=5, latent_dim=3, seed=1)
    assert torch.equal(ds[2]["inputs"], ds[2]["inputs"]) and not torch.equal(ds[2]["inputs"], ds[3]["inputs"])
    with pytest.raises(ValueError, match="num_samples"):
        mm_copgen.LatentDataset(num_samples=0)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    from tests.test_copgen import tiny_generator

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("copgen") / "pairs"
    return copgen.generate_pairs(tiny_generator(), copgen.Navigator(LATENT, init_scale=1.0), root, 16, seed=0)


@pytest.mark.parametrize("positives, nda", [("generated", None), ("augment", "jigsaw")])
def test_pair_contrastive_runner(tmp_path, pairs, positives, nda):
    ds = mm_copgen.PairDataset(str(pairs), positives=positives)
    item = ds[3]
    assert torch.equal(item["anchor"], item["positive"]) == (positives == "augment")
    cfg = dict(
        model=dict(type="nda_plugins.PairContrastive", encoder=dict(width=4, out_dim=8), nda=nda),
        work_dir=str(tmp_path),
        train_dataloader=dict(dataset=dict(type="nda_plugins.PairDataset", data_root=str(pairs), positives=positives),
                              sampler=dict(type="DefaultSampler", shuffle=True), batch_size=8, num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type="Adam", lr=1e-3)),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)),
        default_scope="mmengine", log_level="WARNING", experiment_name=f"copgen-{uuid.uuid4().hex}",
    )
    runner = Runner(**cfg)
    w0 = runner.model.encoder.head[3].weight.clone()
    runner.train()
    loss = runner.message_hub.get_scalar("train/loss").current()
    # In-batch InfoNCE of 8 pairs (+1 NDA key) at the start is near log(8 [+1]) / 0.1-scaled logits: finite, > 0.
    assert 0 < loss < 50
    assert not torch.equal(w0, runner.model.encoder.head[3].weight)
    feats = runner.model(torch.zeros(2, 3, 16, 16), mode="tensor")
    assert feats.shape == (2, runner.model.encoder.feature_dim)


def test_pair_contrastive_nda_keys_enter_the_loss(pairs):
    anchors, positives = copgen.read_pairs(pairs)
    torch.manual_seed(0)
    plain = mm_copgen.PairContrastive(encoder=dict(width=4, out_dim=8))
    torch.manual_seed(0)
    nda = mm_copgen.PairContrastive(encoder=dict(width=4, out_dim=8), nda="jigsaw")
    a = plain(anchors[:8], positives[:8], mode="loss")["loss"]
    b = nda(anchors[:8], positives[:8], mode="loss")["loss"]
    assert b > a  # extra negatives only add to the denominator


def test_pair_dataset_bad_args(tmp_path, pairs):
    with pytest.raises(ValueError, match="positives"):
        mm_copgen.PairDataset(str(pairs), positives="other")
    with pytest.raises(ValueError, match="anchor/ and positive/"):
        mm_copgen.PairDataset(str(tmp_path))


def test_probe_separates_shapes_with_a_useful_feature():
    class Area(torch.nn.Module):  # shape-aware hand-made features: area and radial profile
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def features(self, x):
            bright = (x.mean(1) > x.mean(dim=(1, 2, 3))[:, None, None]).float()
            return torch.stack([bright.mean((1, 2)), bright[:, 12:20, 12:20].mean((1, 2)),
                                bright[:, ::4, ::4].flatten(1).std(1)], 1)

    class Zero(Area):
        def features(self, x):
            return torch.zeros(x.shape[0], 3)

    useful = mm_copgen.probe(Area(), n_train_per_class=60, n_test_per_class=60)
    useless = mm_copgen.probe(Zero(), n_train_per_class=60, n_test_per_class=60)
    assert useless["test_top1"] == pytest.approx(1 / 3, abs=0.01)
    assert useful["test_top1"] > 0.45


@pytest.mark.slow
def test_launcher_all_quick_writes_results(tmp_path):
    from click.testing import CliRunner

    from nda_plugins.adapters.mmengine_copgen import launch

    res = CliRunner().invoke(launch.main, ["all", "--work-dir", str(tmp_path / "run"), "--quick"])
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "run" / "compare" / "results.json").read_text())
    assert set(results["runs"]) == {"generated", "augment", "untrained"}
    for row in results["runs"].values():
        assert 0 <= row["probe"]["test_top1"] <= 1
    assert "generated" in (tmp_path / "run" / "compare" / "table.txt").read_text()
    assert len(list((tmp_path / "run" / "pairs" / "anchor").glob("*.png"))) == 64
    again = CliRunner().invoke(launch.main, ["all", "--work-dir", str(tmp_path / "run"), "--quick"])
    assert again.exit_code == 2 and "not empty" in again.output


@pytest.mark.parametrize("args, message", [
    (["all", "--quick", "--nda", "bogus"], "Invalid value for --nda: unknown transform 'bogus'"),
    (["navigator", "--generator", "nosuch.mod:make"], "cannot import 'nosuch.mod'"),
    (["generate", "--out", "x"], "holds no finished navigator run"),
])
def test_launcher_errors_are_one_line(tmp_path, args, message):
    from click.testing import CliRunner

    from nda_plugins.adapters.mmengine_copgen import launch

    extra = ["--navigator-dir", str(tmp_path)] if args[0] == "generate" else ["--work-dir", str(tmp_path / "w")]
    res = CliRunner().invoke(launch.main, args + extra)
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output
    assert not isinstance(res.exception, (ValueError, TypeError))


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_navigator_and_contrastive(tmp_path):
    """`all --launcher pytorch` under torchrun: navigator minimax (own train_step, gradients averaged
    before each optimizer step) and the pair-contrastive runs (DDP); replicas must end identical."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:  # a free port (torchrun's --master-port=0 hangs here)
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master-port={port}",
           "-m", "nda_plugins.adapters.mmengine_copgen.launch", "all", "--quick", "--launcher", "pytorch",
           "--work-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = json.loads((tmp_path / "run" / "navigator" / "navigator_stats.json").read_text())
    assert stats["world_size"] == 2 and stats["replica_max_diff"] == 0.0
    results = json.loads((tmp_path / "run" / "compare" / "results.json").read_text())
    assert results["runs"]["generated"]["world_size"] == results["runs"]["augment"]["world_size"] == 2
    assert "Distributed training: True" in proc.stdout + proc.stderr


def test_cpu_wrapper_refuses_bad_optim_wrapper():
    from nda_plugins.mmengine.compat import install_gradient_averaging, replica_max_diff

    with pytest.raises(TypeError, match="optim_wrapper"):
        install_gradient_averaging(object())
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    install_gradient_averaging(opt)
    install_gradient_averaging(opt)  # idempotent: one hook
    assert len(opt._optimizer_step_pre_hooks) == 1
    assert replica_max_diff(torch.nn.Linear(2, 1)) == 0.0  # not distributed
