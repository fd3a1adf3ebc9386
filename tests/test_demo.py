"""Tests of ``nda demo``: the procedural images, the dot counter, the outputs and the CLI."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nda_plugins import losses
from nda_plugins.cli import main
from nda_plugins.demo import _output, anomaly, gan, numerosity
from nda_plugins.demo.images import count_components, dots, label_components, max_dots, other_counts, shapes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# Reference: a slow, obviously correct connected-components count (BFS, 8-connectivity)
# ------------------------------------------------------------------------------------------


def _reference_components(mask: torch.Tensor) -> list[list[int]]:
    """Per image, the sizes of its 8-connected components (sorted)."""
    out = []
    for m in mask.tolist():
        h, w = len(m), len(m[0])
        seen = [[False] * w for _ in range(h)]
        sizes = []
        for i in range(h):
            for j in range(w):
                if m[i][j] and not seen[i][j]:
                    seen[i][j] = True
                    queue, size = deque([(i, j)]), 0
                    while queue:
                        y, x = queue.popleft()
                        size += 1
                        for dy in (-1, 0, 1):
                            for dx in (-1, 0, 1):
                                yy, xx = y + dy, x + dx
                                if 0 <= yy < h and 0 <= xx < w and m[yy][xx] and not seen[yy][xx]:
                                    seen[yy][xx] = True
                                    queue.append((yy, xx))
                    sizes.append(size)
        out.append(sorted(sizes))
    return out


# ------------------------------------------------------------------------------------------
# Dot generator
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32, 48])
def test_dots_have_exactly_k_separate_dots(size):
    counts = torch.arange(max_dots(size) + 1).repeat(4)
    x = dots(counts, size=size, generator=_gen(1))
    assert x.shape == (counts.numel(), 3, size, size)
    assert x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.equal(count_components(x), counts)
    # Counted with min_size=1 too: no stray pixels, and every dot has 10..14 pixels.
    assert torch.equal(count_components(x, min_size=1), counts)
    sizes = _reference_components(((x.amax(1) + 1) / 2) > 0.4)
    assert all(10 <= s <= 14 for image in sizes for s in image)
    assert [len(s) for s in sizes] == counts.tolist()


def test_dots_are_seeded_and_vary():
    counts = torch.full((8,), 5)
    a = dots(counts, generator=_gen(3))
    b = dots(counts, generator=_gen(3))
    c = dots(counts, generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Different images within one batch (positions and colours are per sample).
    assert not torch.equal(a[0], a[1])


def test_dots_colours_are_visible():
    x = dots(torch.full((64,), 4), generator=_gen(0))
    on = x.amax(1) > -1.0
    brightest = ((x.amax(1) + 1) / 2)[on]
    assert float(brightest.min()) >= 0.7 - 1e-6


def test_dots_reject_bad_input():
    with pytest.raises(ValueError, match="counts"):
        dots(torch.tensor([17]))
    with pytest.raises(ValueError, match="counts"):
        dots(torch.tensor([-1]))
    with pytest.raises(TypeError, match="counts"):
        dots(torch.tensor([2.0]))
    with pytest.raises(ValueError, match="size"):
        dots(torch.tensor([2]), size=20)
    with pytest.raises(TypeError, match="generator"):
        dots(torch.tensor([2]), generator=0)


def test_other_counts_are_near_k_and_never_k():
    c = other_counts(6, 4000, generator=_gen(0))
    assert set(c.tolist()) == {4, 5, 7, 8}
    # Offsets that leave [0, 16] are dropped.
    assert set(other_counts(1, 500, generator=_gen(0)).tolist()) == {0, 2, 3}
    with pytest.raises(ValueError, match="offsets"):
        other_counts(3, 4, offsets=(0, 1))


@pytest.mark.parametrize("kind", ["disc", "square", "ring"])
def test_shapes(kind):
    x = shapes(6, kind, generator=_gen(0))
    assert x.shape == (6, 3, 32, 32)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    # One large foreground component per image.
    assert count_components(x, threshold=0.45).tolist() == [1] * 6
    with pytest.raises(ValueError, match="kind"):
        shapes(2, "star")


# ------------------------------------------------------------------------------------------
# Counter
# ------------------------------------------------------------------------------------------


def _mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[ch == "#" for ch in row] for row in rows])


def test_counter_on_hand_made_masks():
    masks = torch.stack([
        _mask(["......", "......", "......", "......"]),      # empty
        _mask(["######", "######", "######", "######"]),      # full
        _mask(["##....", "##..##", "....##", "......"]),      # two blobs, diagonal gap of one pixel
        _mask(["#.....", ".#....", "..#...", "...#.."]),      # diagonal line: one 8-connected piece
        _mask(["#.#.#.", "......", "#.#.#.", "......"]),      # six isolated pixels
        _mask(["###...", "..#...", "###..#", "#....."]),      # snake + isolated pixel
    ])
    assert count_components(masks, min_size=1).tolist() == [0, 1, 2, 1, 6, 2]
    # min_size drops specks: the snake (8 px) stays, single pixels go.
    assert count_components(masks, min_size=3).tolist() == [0, 1, 2, 1, 0, 1]


def test_counter_long_spiral_converges():
    # A one-pixel-wide spiral needs many propagation steps: the loop must run to convergence.
    n = 15
    grid = [["." for _ in range(n)] for _ in range(n)]
    top, left, bottom, right = 0, 0, n - 1, n - 1
    while top <= bottom and left <= right:
        for j in range(left, right + 1):
            grid[top][j] = "#"
        for i in range(top, bottom + 1):
            grid[i][right] = "#"
        for j in range(left, right + 1):
            grid[bottom][j] = "#"
        for i in range(top + 2, bottom + 1):
            grid[i][left] = "#"
        if top + 2 <= bottom:
            grid[top + 2][left + 1] = "#"
        top, left, bottom, right = top + 4, left + 2, bottom - 2, right - 2
    mask = _mask(["".join(r) for r in grid])[None]
    assert count_components(mask, min_size=1).tolist() == [len(_reference_components(mask)[0])]


def test_counter_matches_reference_on_random_masks():
    mask = torch.rand(12, 14, 13, generator=_gen(5)) < 0.45
    expected = _reference_components(mask)
    for min_size in (1, 3):
        want = [sum(s >= min_size for s in image) for image in expected]
        assert count_components(mask, min_size=min_size).tolist() == want
    labels = label_components(mask)
    assert torch.equal(labels > 0, mask)
    got_sizes = [sorted(torch.bincount(lab[lab > 0]).tolist()[1:]) for lab in labels]
    assert [[s for s in sizes if s] for sizes in got_sizes] == expected


def test_counter_rejects_bad_input():
    with pytest.raises(ValueError, match="images"):
        count_components(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="mask"):
        label_components(torch.rand(2, 8, 8))


# ------------------------------------------------------------------------------------------
# Output helpers
# ------------------------------------------------------------------------------------------


def test_new_run_dir_never_reuses_a_non_empty_folder(tmp_path):
    first = _output.new_run_dir(tmp_path / "run")
    assert first == tmp_path / "run"
    (first / "results.json").write_text("{}")
    second = _output.new_run_dir(tmp_path / "run")
    assert second == tmp_path / "run-2" and second.is_dir()
    (second / "x").write_text("")
    assert _output.new_run_dir(tmp_path / "run") == tmp_path / "run-3"
    # An existing empty folder is used as is.
    (tmp_path / "empty").mkdir()
    assert _output.new_run_dir(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="--out"):
        _output.new_run_dir(tmp_path / "file")


def test_grid_places_each_image():
    x = torch.linspace(-1, 1, 5)[:, None, None, None].expand(5, 3, 2, 2)
    grid = _output.to_uint8_grid(x, nrow=2, pad=1)
    assert grid.shape == (3 * 3 + 1, 2 * 3 + 1, 3)
    cells = [grid[1 + 3 * (i // 2), 1 + 3 * (i % 2), 0].item() for i in range(5)]
    assert cells == [0, 64, 128, 191, 255]
    assert grid[7, 4, 0].item() == 128  # the empty sixth cell stays grey


# ------------------------------------------------------------------------------------------
# Training uses the library's objective
# ------------------------------------------------------------------------------------------


def _tiny_numerosity(**kw):
    base = dict(k=3, seeds=(0,), steps=3, batch_size=8, width=4, n_train=16, n_negatives=16, n_eval=16)
    base.update(kw)
    return numerosity.NumerosityConfig(**base)


def test_nda_run_goes_through_library_loss(monkeypatch, tmp_path):
    seen = []
    real_loss = losses.discriminator_loss

    def spy(real, fake, neg=None, *, nda_weight, kind="logistic"):
        seen.append((nda_weight, neg is not None))
        return real_loss(real, fake, neg, nda_weight=nda_weight, kind=kind)

    monkeypatch.setattr(losses, "discriminator_loss", spy)
    numerosity.run(_tiny_numerosity(nda_weight=0.4), tmp_path, log=lambda _: None)
    # 3 baseline steps without negatives, then 3 NDA steps with them.
    assert seen == [(0.0, False)] * 3 + [(0.4, True)] * 3


def test_runs_are_repeatable(tmp_path):
    a = numerosity.run(_tiny_numerosity(), _output.new_run_dir(tmp_path / "a"), log=lambda _: None)
    b = numerosity.run(_tiny_numerosity(), _output.new_run_dir(tmp_path / "b"), log=lambda _: None)
    assert a["runs"] == b["runs"]


def test_missing_matplotlib_still_writes_json_table_and_plain_grids(monkeypatch, tmp_path):
    monkeypatch.setattr(_output, "pyplot", lambda: None)
    messages = []
    result = numerosity.run(_tiny_numerosity(), tmp_path, log=messages.append)
    assert any("pip install nda-plugins[demo]" in m for m in messages)
    assert result["files"]["plot"] is None
    assert not (tmp_path / "histogram.png").exists()
    assert json.loads((tmp_path / "results.json").read_text())["files"]["plot"] is None
    assert (tmp_path / "table.txt").read_text().startswith("Dot counts")
    for name in result["files"]["grids"]:  # unlabelled, but still there
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


class _GridSpy:
    """Stands in for ``_output.save_labelled_grid``: records each call, writes nothing."""

    def __init__(self):
        self.calls = {}

    def __call__(self, path, images, **labels):
        self.calls[Path(path).name] = dict(labels, images=images)
        return True


def test_numerosity_grids_carry_dot_counts_and_seed(monkeypatch, tmp_path):
    spy = _GridSpy()
    monkeypatch.setattr(_output, "save_labelled_grid", spy)
    config = _tiny_numerosity(seeds=(3, 4), k=4)
    result = numerosity.run(config, tmp_path, log=lambda _: None)
    expected = ["samples_real.png", "samples_negatives.png"] + [
        f"samples_{name}_seed{seed}.png" for seed in (3, 4) for name in ("baseline", "nda")]
    assert sorted(spy.calls) == sorted(expected) == sorted(result["files"]["grids"])
    for name, call in spy.calls.items():
        counts = count_components(call["images"]).tolist()
        # Each thumbnail's caption is its counted dots, green exactly when it equals k.
        assert call["captions"] == [f"{c} dot{'s' if c != 1 else ''}" for c in counts], name
        assert call["caption_colours"] == ["tab:green" if c == 4 else "tab:red" for c in counts], name
        assert "4" in call["title"]
    assert all(c == "4 dots" for c in spy.calls["samples_real.png"]["captions"])
    assert "4 dots" not in spy.calls["samples_negatives.png"]["captions"]
    for seed in (3, 4):
        for name in ("baseline", "nda"):
            title = spy.calls[f"samples_{name}_seed{seed}.png"]["title"]
            share = next(e["share_k"] for e in result["runs"][name]["per_seed"] if e["seed"] == seed)
            assert f"seed {seed}" in title and f"{share:.0%}" in title
            assert ("NDA" in title) == (name == "nda")


def test_results_have_per_seed_numbers_and_spreads(tmp_path):
    result = numerosity.run(_tiny_numerosity(seeds=(0, 1)), tmp_path, log=lambda _: None)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(result["runs"]))
    for name in ("baseline", "nda"):
        entry = saved["runs"][name]
        seeds = entry["per_seed"]
        assert [s["seed"] for s in seeds] == [0, 1]
        shares = [s["share_k"] for s in seeds]
        errors = [s["mean_abs_error"] for s in seeds]
        assert entry["share_k_per_seed"] == shares and entry["mean_abs_error_per_seed"] == errors
        assert entry["share_k_mean"] == pytest.approx(sum(shares) / 2)
        assert entry["share_k_std"] == pytest.approx(abs(shares[0] - shares[1]) / 2)
        assert entry["mean_abs_error_std"] == pytest.approx(abs(errors[0] - errors[1]) / 2)
        for s in seeds:
            assert sum(s["counts"].values()) == 16
            k_share = s["counts"].get("3", 0) / 16
            assert s["share_k"] == pytest.approx(k_share)


def _pooled_result(k=6):
    per_seed = [{"seed": s, "share_k": share, "mean_abs_error": 0.5, "counts": counts}
                for s, share, counts in ((0, 0.5, {"5": 5, "6": 5}), (1, 0.7, {"6": 7, "7": 3}))]
    run = {"nda_weight": 0.5, "n_samples": 20, "counts": {"5": 5, "6": 12, "7": 3}, "share_k": 0.6,
           "share_k_mean": 0.6, "share_k_std": 0.1, "mean_abs_error": 0.4, "per_seed": per_seed}
    return {"k": k, "seeds": [0, 1], "runs": {"baseline": dict(run, nda_weight=0.0), "nda": run}}


def test_histogram_labels_the_k_line_and_keeps_the_legend_off_the_bars(monkeypatch, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to inspect it
    assert numerosity.plot(_pooled_result(), tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_SIGNATURE
    (fig,) = figures
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("k = 6" in t for t in texts)
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == 2 and "exactly 6: 60.0% ± 10.0%" in labels[1] and labels[1].startswith("NDA")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # right of the axes
    assert "seeds 0, 1" in ax.get_title()


def test_save_labelled_grid_checks_labels_and_needs_matplotlib(monkeypatch, tmp_path):
    images = torch.zeros(6, 3, 8, 8)
    with pytest.raises(ValueError, match="captions: expected 6"):
        _output.save_labelled_grid(tmp_path / "a.png", images, captions=["x"] * 5)
    with pytest.raises(ValueError, match="row_labels: expected 2"):
        _output.save_labelled_grid(tmp_path / "a.png", images, nrow=3, row_labels=["a"])
    with pytest.raises(ValueError, match="col_labels: expected 3"):
        _output.save_labelled_grid(tmp_path / "a.png", images, nrow=3, col_labels=["a"])
    with pytest.raises(ValueError, match="images"):
        _output.save_labelled_grid(tmp_path / "a.png", torch.zeros(3, 8, 8))
    monkeypatch.setattr(_output, "pyplot", lambda: None)
    assert not _output.save_labelled_grid(tmp_path / "b.png", images)
    assert not (tmp_path / "b.png").exists()


def test_save_labelled_grid_draws_every_text(monkeypatch, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    assert _output.save_labelled_grid(tmp_path / "g.png", torch.zeros(4, 3, 8, 8), nrow=2,
                                      captions=["c0", "c1", "c2", "c3"], row_labels=["r0", "r1"],
                                      col_labels=["k0", "k1"], title="T", metadata={"Columns": "k0, k1"})
    texts = sorted(t.get_text() for t in figures[0].axes[0].texts)
    assert texts == sorted(["c0", "c1", "c2", "c3", "r0", "r1", "k0", "k1", "T"])
    data = (tmp_path / "g.png").read_bytes()
    assert data[:8] == PNG_SIGNATURE and b"Columns" in data


def test_anomaly_sets_rows_are_labelled(monkeypatch, tmp_path):
    spy = _GridSpy()
    monkeypatch.setattr(_output, "save_labelled_grid", spy)
    config = anomaly.AnomalyConfig(seeds=(0,), steps=2, batch_size=8, width=4, n_train=16, n_eval=16)
    anomaly.run(config, tmp_path, log=lambda _: None)
    sets = spy.calls["sets.png"]
    assert sets["row_labels"] == anomaly.SET_LABELS
    assert len(sets["row_labels"]) == 1 + len(anomaly.OOD_SETS) and "in-distribution" in sets["row_labels"][0]
    assert sets["images"].shape[0] == 8 * len(sets["row_labels"])
    assert "seed 0" in sets["title"] and "seed 0" in spy.calls["samples_nda.png"]["title"]


def test_config_validation_names_the_flag():
    with pytest.raises(ValueError, match="--k"):
        _tiny_numerosity(k=16).validate()
    with pytest.raises(ValueError, match="--nda-weight"):
        _tiny_numerosity(nda_weight=1.0).validate()
    with pytest.raises(ValueError, match="--transform"):
        anomaly.AnomalyConfig(transform="nope").validate()


def test_blur_keeps_shape_and_smooths():
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8, 8] = 1.0
    y = anomaly.blur(x)
    assert y.shape == x.shape
    assert float(y.max()) < 0.1 and abs(float(y.sum()) - 3.0) < 1e-4


def test_minibatch_std_lets_d_see_a_collapsed_batch():
    torch.manual_seed(0)
    D = gan.Discriminator(4, 16, minibatch_std=True).eval()  # eval: no power iteration per call
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    same = x[:1].expand(6, -1, -1, -1)
    # Identical samples: zero spread, so the logit equals the one of the sample alone.
    assert torch.allclose(D(same), D(x[:1]).expand(6), atol=1e-6)
    # A diverse batch changes every sample's logit (the spread channel is not zero).
    assert not torch.allclose(D(x)[:1], D(x[:1]), atol=1e-6)
    plain = gan.Discriminator(4, 16).eval()
    assert torch.allclose(plain(x)[:1], plain(x[:1]), atol=1e-6)


def test_train_gan_d_steps_and_average():
    calls = []
    real_loss = losses.discriminator_loss

    def spy(*args, **kwargs):
        calls.append(1)
        return real_loss(*args, **kwargs)

    pool = dots(torch.full((16,), 2), size=16, generator=_gen())
    cfg = gan.TrainConfig(steps=3, batch_size=4, width=4, size=16, z_dim=8, d_steps=2, ema=0.9,
                          betas=(0, 0.9), kind="hinge", minibatch_std=True)
    import nda_plugins.losses as L

    original = L.discriminator_loss
    L.discriminator_loss = spy
    try:
        G, _ = gan.train_gan(pool, lambda x, generator=None: -x, cfg, seed=0)
    finally:
        L.discriminator_loss = original
    assert len(calls) == 6  # 3 steps x 2 D updates
    plain, _ = gan.train_gan(pool, lambda x, generator=None: -x, gan.TrainConfig(
        steps=3, batch_size=4, width=4, size=16, z_dim=8, d_steps=2, betas=(0, 0.9), kind="hinge",
        minibatch_std=True), seed=0)
    # The returned G is the moving average, not the last iterate.
    assert any(not torch.equal(a, b) for a, b in zip(G.parameters(), plain.parameters()))
    avg, model = gan.Generator(8, 4, 16), gan.Generator(8, 4, 16)
    expected = [0.75 * a + 0.25 * m for a, m in zip(avg.parameters(), model.parameters())]
    gan._update_average(avg, model, 0.75)
    assert all(torch.allclose(a, e) for a, e in zip(avg.parameters(), expected))
    assert all(torch.equal(a, m) for a, m in zip(avg.buffers(), model.buffers()))


def test_gan_shapes():
    G, D = gan.Generator(16, 4, 16), gan.Discriminator(4, 16)
    z = torch.randn(5, 16)
    assert G(z).shape == (5, 3, 16, 16)
    assert D(G(z)).shape == (5,)
    with pytest.raises(ValueError, match="size"):
        gan.Generator(16, 4, 24)


# ------------------------------------------------------------------------------------------
# CLI, end to end with --quick
# ------------------------------------------------------------------------------------------


def _check_png(path: Path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path


def test_cli_numerosity_quick(tmp_path):
    out = tmp_path / "num"
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "baseline" in result.output and "nda" in result.output and str(out) in result.output
    data = json.loads((out / "results.json").read_text())
    assert data["demo"] == "numerosity" and data["k"] == 6 and data["seeds"] == [0]
    assert data["settings"]["steps"] == numerosity.QUICK["steps"]
    for name in ("baseline", "nda"):
        run = data["runs"][name]
        assert sum(run["counts"].values()) == run["n_samples"] == numerosity.QUICK["n_eval"]
        assert all(int(c) >= 0 for c in run["counts"])
        assert 0.0 <= run["share_k"] <= 1.0
        assert run["share_k"] == pytest.approx(run["counts"].get("6", 0) / run["n_samples"])
    assert data["runs"]["nda"]["nda_weight"] == 0.5 and data["runs"]["baseline"]["nda_weight"] == 0.0
    for name in ("samples_real", "samples_negatives", "samples_baseline_seed0", "samples_nda_seed0"):
        _check_png(out / f"{name}.png")
    if _output.pyplot() is not None:
        _check_png(out / "histogram.png")
    else:
        assert data["files"]["plot"] is None
    assert sorted(data["files"]["grids"]) == sorted(
        ["samples_real.png", "samples_negatives.png", "samples_baseline_seed0.png", "samples_nda_seed0.png"])
    assert (out / "table.txt").read_text().strip() in result.output


def test_cli_anomaly_quick(tmp_path):
    out = tmp_path / "ano"
    result = CliRunner().invoke(main, ["demo", "anomaly", "--quick", "--out", str(out), "--seeds", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["demo"] == "anomaly" and data["seeds"] == [1]
    for name in ("baseline", "nda"):
        auroc = data["runs"][name]["auroc"]
        assert set(auroc) == set(anomaly.OOD_SETS)
        assert all(0.0 <= v <= 1.0 for v in auroc.values())
    for name in ("sets", "samples_baseline", "samples_nda"):
        _check_png(out / f"{name}.png")
    if _output.pyplot() is not None:
        _check_png(out / "auroc.png")
    else:
        assert data["files"]["plot"] is None
    for ood in anomaly.OOD_SETS:
        assert ood in result.output


def test_cli_help_documents_every_flag():
    runner = CliRunner()
    from nda_plugins.cli.demo import anomaly as anomaly_cmd, demo as demo_cmd

    for args, cmd in ((["demo", "--help"], demo_cmd), (["demo", "anomaly", "--help"], anomaly_cmd)):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        for param in cmd.params:
            assert param.help, param.name
            for opt in param.opts:
                assert opt in result.output, opt
    assert "anomaly" in runner.invoke(main, ["demo", "--help"]).output


def test_cli_rejects_numerosity_flags_before_subcommand():
    result = CliRunner().invoke(main, ["demo", "--k", "3", "anomaly"])
    assert result.exit_code == 2
    assert "--k" in result.output


def test_cli_bad_seeds():
    result = CliRunner().invoke(main, ["demo", "--seeds", "a,b"])
    assert result.exit_code == 2 and "--seeds" in result.output
