"""Negative transforms: one contract test parametrized over every registered transform, plus a
hand-computed numerical test per transform."""

from __future__ import annotations

import shutil

import pytest
import torch

from nda_plugins import _manager
from nda_plugins import transforms as T
from nda_plugins.transforms import _sampling as S

#: The contract below is checked for every transform of this environment, third-party plugins
#: included: names are collected from a manager with the entry points loaded (unless
#: NDA_PLUGINS_DISABLE_AUTOLOAD is set when pytest starts) and every test of this module runs
#: with a fresh manager built the same way (conftest.py otherwise turns autoload off). A plugin
#: that fails to load is skipped here and reported by `nda doctor`.
_AUTOLOAD = not _manager._autoload_disabled()


def _contract_manager():
    return _manager.new_plugin_manager(autoload=_AUTOLOAD, on_broken=lambda name, reason: None)


NAMES = T.available(_contract_manager())
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]


@pytest.fixture(autouse=True)
def _same_plugins_as_collection(_isolated_plugin_manager):
    """Run with the transforms the names were collected from (isolated: a new manager per test)."""
    _manager.set_plugin_manager(_contract_manager())
    yield


def _batch(shape, dtype=torch.float32, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8).to(device)
    return torch.rand(shape, generator=g).to(device=device, dtype=dtype)


def _make(name, x):
    return T.build(name, **T.example_options(name, x))


def _gen(device, seed=1):
    return torch.Generator(device=device).manual_seed(seed)


def test_builtin_names_present():
    assert {"jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise", "source"} <= set(NAMES)


# ---------------------------------------------------------------------------------------------
# The contract, for every registered transform
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_contract_shape_dtype_device_no_mutation(name, dtype, device):
    x = _batch((6, 3, 16, 12), dtype, device)
    before = x.clone()
    y = _make(name, x)(x, generator=_gen(device))
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.data_ptr() != x.data_ptr()
    assert torch.equal(x, before), "the transform modified its input"
    assert y.is_contiguous()


@pytest.mark.parametrize("name", NAMES)
def test_contract_channels_last_kept(name):
    x = _batch((4, 3, 16, 16)).contiguous(memory_format=torch.channels_last)
    t = _make(name, x)
    y = t(x, generator=_gen("cpu"))
    assert y.is_contiguous(memory_format=torch.channels_last)
    # the same parameters on a channels-first copy give the same values (cutout's box mean may
    # differ in the last bit: the sum runs in another order)
    y_cf = t(x.contiguous(), params=t.last_params)
    torch.testing.assert_close(y, y_cf.contiguous(memory_format=torch.channels_last))


@pytest.mark.parametrize("name", NAMES)
def test_contract_non_contiguous_input(name):
    x = _batch((4, 3, 16, 32))[..., ::2]  # strided view
    t = _make(name, x)
    y = t(x, generator=_gen("cpu"))
    assert y.shape == x.shape
    torch.testing.assert_close(y, t(x.contiguous(), params=t.last_params), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_contract_determinism(name, device):
    x = _batch((8, 3, 16, 16), device=device)
    t = _make(name, x)
    a = t(x, generator=_gen(device, 7))
    b = t(x, generator=_gen(device, 7))
    c = t(x, generator=_gen(device, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(64, 3, 8, 8), (64, 1, 2, 2), (2, 3, 4, 4), (64, 3, 9, 7)])
def test_contract_never_equal_to_source(name, shape):
    x = _batch(shape)
    t = _make(name, x)
    for seed in range(5):
        y = t(x, generator=_gen("cpu", seed))
        same = (y == x).flatten(1).all(dim=1)
        assert not same.any(), f"{name}: {int(same.sum())} negatives equal their source (seed {seed})"


@pytest.mark.parametrize("name", NAMES)
def test_contract_video_one_draw_per_clip(name):
    x = _batch((4, 3, 5, 16, 16))  # (B, C, T, H, W)
    t = _make(name, x)
    y = t(x, generator=_gen("cpu"))
    assert y.shape == x.shape and y.dtype == x.dtype
    if getattr(t, "frame_params", True):
        for frame in range(x.shape[2]):
            expected = t(x[:, :, frame], params=t.last_params)
            if name == "cutout":
                # the same box; its mean may differ in the last bit: a clip's frames are summed by
                # one matmul over all its planes, a frame alone by one over its channels
                torch.testing.assert_close(y[:, :, frame], expected, rtol=0, atol=4 * torch.finfo(x.dtype).eps,
                                           msg=lambda m, frame=frame: f"{name}: frame {frame} used other parameters: {m}")
            else:
                assert torch.equal(y[:, :, frame], expected), f"{name}: frame {frame} used other parameters"
    same = (y == x).flatten(1).all(dim=1)
    assert not same.any()


@pytest.mark.parametrize("name", NAMES)
def test_contract_video_channels_last_3d(name):
    x = _batch((3, 3, 4, 8, 8)).contiguous(memory_format=torch.channels_last_3d)
    t = _make(name, x)
    y = t(x, generator=_gen("cpu"))
    assert y.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(y, t(x.contiguous(), params=t.last_params))


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if getattr(T.registry(_contract_manager()).factory(n), "pairwise", False)])
def test_contract_pairwise_batch_of_one(name):
    x = _batch((1, 3, 8, 8))
    t = _make(name, x)
    with pytest.raises(ValueError, match="partner"):
        t(x)
    partner = _batch((1, 3, 8, 8), seed=5)
    y = t(x, partner=partner, generator=_gen("cpu"))
    assert y.shape == x.shape and not torch.equal(y, x)


@pytest.mark.parametrize("name", NAMES)
def test_contract_rejects_bad_input(name):
    x = _batch((2, 3, 8, 8))
    t = _make(name, x)
    with pytest.raises(ValueError, match="x must be images"):
        t(x[0])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        t(x.numpy() if hasattr(x, "numpy") else [1])
    with pytest.raises(TypeError, match="dtype"):
        t(x > 0.5)
    with pytest.raises(TypeError, match="generator"):
        t(x, generator=0)


# ---------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------


def _grid4():
    return torch.arange(16.0).view(1, 1, 4, 4)


class TestJigsaw:
    def test_values(self):
        t = T.build("jigsaw")
        y = t(_grid4(), params={"perm": torch.tensor([[2, 0, 1, 3]])})
        expected = torch.tensor(
            [[8.0, 9, 0, 1], [12, 13, 4, 5], [2, 3, 10, 11], [6, 7, 14, 15]]
        ).view(1, 1, 4, 4)
        assert torch.equal(y, expected)

    def test_remainder_rows_and_columns_stay(self):
        x = torch.arange(30.0).view(1, 1, 5, 6)
        y = T.build("jigsaw", grid=2)(x, params={"perm": torch.tensor([[3, 2, 1, 0]])})
        assert torch.equal(y[..., 4, :], x[..., 4, :])  # 5 rows: the last stays
        assert torch.equal(y[..., :2, :3], x[..., 2:4, 3:6])  # cell 0 <- cell 3

    def test_grid3_channels(self):
        x = torch.arange(2 * 36.0).view(1, 2, 6, 6)
        perm = torch.tensor([[8, 7, 6, 5, 4, 3, 2, 1, 0]])
        y = T.build("jigsaw:grid=3")(x, params={"perm": perm})
        # cell order reversed == rotate by 180 degrees at cell level, content kept within cells
        for c in range(2):
            for cell in range(9):
                i, j = divmod(cell, 3)
                si, sj = divmod(8 - cell, 3)
                assert torch.equal(y[0, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2], x[0, c, 2 * si : 2 * si + 2, 2 * sj : 2 * sj + 2])

    def test_all_23_permutations_and_never_identity(self):
        perms = S.non_identity_permutations(20000, 4, generator=_gen("cpu"), device="cpu")
        identity = torch.arange(4)
        assert not (perms == identity).all(dim=1).any()
        uniq, counts = torch.unique(perms, dim=0, return_counts=True)
        assert len(uniq) == 23
        assert counts.min() > 20000 / 23 * 0.8  # roughly uniform

    def test_large_grid_never_identity(self):
        perms = S.non_identity_permutations(5000, 9, generator=_gen("cpu"), device="cpu")
        assert not (perms == torch.arange(9)).all(dim=1).any()
        assert torch.equal(perms.sort(dim=1).values, torch.arange(9).expand(5000, 9))

    def test_rejects_bad_grid(self):
        with pytest.raises(ValueError, match="grid must be >= 2"):
            T.build("jigsaw:grid=1")
        with pytest.raises(TypeError, match="grid must be an int"):
            T.build("jigsaw", grid=2.5)
        with pytest.raises(ValueError, match="at least 3x3"):
            T.build("jigsaw:grid=3")(torch.rand(2, 1, 2, 2))


class TestStitch:
    def test_values(self):
        x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
        t = T.build("stitch")
        # mode 3: vertical split, partner gives the right half; mode 0: horizontal, partner on top
        params = {"partner": torch.tensor([1, 0]), "mode": torch.tensor([3, 0])}
        y = t(x, params=params)
        # sample 0: left half its own (0), right half from sample 1 (1)
        assert torch.equal(y[0, 0], torch.tensor([[0.0, 0, 1, 1]] * 4))
        # sample 1: top half from sample 0 (0), bottom half its own (1)
        assert torch.equal(y[1, 0], torch.tensor([[0.0] * 4] * 2 + [[1.0] * 4] * 2))

    def test_odd_size_path_matches_definition(self):
        x = _batch((3, 2, 5, 7))
        t = T.build("stitch")
        params = {"partner": torch.tensor([2, 0, 1]), "mode": torch.tensor([2, 1, 3])}
        y = t(x, params=params)
        assert torch.equal(y[0, :, :, :3], x[2, :, :, :3]) and torch.equal(y[0, :, :, 3:], x[0, :, :, 3:])
        assert torch.equal(y[1, :, :2], x[1, :, :2]) and torch.equal(y[1, :, 2:], x[0, :, 2:])
        assert torch.equal(y[2, :, :, 3:], x[1, :, :, 3:]) and torch.equal(y[2, :, :, :3], x[2, :, :, :3])

    def test_partners_never_self_and_cover_others(self):
        p = S.partners(5, generator=_gen("cpu"), device="cpu")
        many = torch.stack([S.partners(5, generator=_gen("cpu", s), device="cpu") for s in range(200)])
        assert not (many == torch.arange(5)).any()
        assert set(many[:, 0].tolist()) == {1, 2, 3, 4}
        assert p.shape == (5,)


class TestCutout:
    def test_values(self):
        x = _grid4()
        params = {"start": torch.tensor([[1, 0]]), "size": torch.tensor([[2, 3]])}
        y = T.build("cutout", low=0.5, high=0.75)(x, params=params)
        expected = x.clone()
        expected[0, 0, 1:3, 0:3] = torch.tensor([4.0, 5, 6, 8, 9, 10]).mean()
        assert torch.equal(y, expected)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
    @pytest.mark.parametrize(
        "shape, memory_format",
        [
            ((5, 3, 70, 90), torch.contiguous_format),  # large: the box-rows mean
            ((5, 3, 70, 90), torch.channels_last),
            ((3, 3, 4, 80, 66), torch.contiguous_format),
            ((3, 3, 4, 80, 66), torch.channels_last_3d),
            ((4, 2, 12, 10), torch.contiguous_format),  # small: the matmul mean
            ((4, 2, 3, 12, 10), torch.channels_last_3d),
        ],
        ids=str,
    )
    def test_mean_fill_matches_a_per_sample_reference(self, shape, memory_format, dtype):
        x = _batch(shape, dtype).contiguous(memory_format=memory_format)
        t = T.build("cutout")
        y = t(x, generator=_gen("cpu"))
        expected = x.clone()
        for i in range(shape[0]):  # the obvious per-sample reference
            (top, left), (h, w) = t.last_params["start"][i].tolist(), t.last_params["size"][i].tolist()
            box = (i, Ellipsis, slice(top, top + h), slice(left, left + w))
            expected[box] = x[box].mean(dim=(-2, -1), keepdim=True)
        torch.testing.assert_close(y, expected, rtol=0, atol=4 * torch.finfo(dtype).eps)
        assert y.is_contiguous(memory_format=memory_format)

    def test_uint8_mean_is_rounded(self):
        x = torch.tensor([[[[0, 1]]]], dtype=torch.uint8)
        params = {"start": torch.tensor([[0, 0]]), "size": torch.tensor([[1, 2]])}
        y = T.build("cutout", low=0.5, high=1.0)(x, params=params)
        assert y.tolist() == [[[[0, 0]]]]  # mean 0.5 rounds half to even

    def test_box_sides_within_a_third_and_a_half(self):
        start, size = S.boxes(4000, 30, 24, low=1 / 3, high=1 / 2, generator=_gen("cpu"), device="cpu")
        top, left, bh, bw = start[:, 0], start[:, 1], size[:, 0], size[:, 1]
        assert bh.min() == 10 and bh.max() == 15 and bw.min() == 8 and bw.max() == 12
        assert (top >= 0).all() and (top + bh <= 30).all() and (left + bw <= 24).all()
        assert top.max() == 30 - 10 and left.min() == 0

    def test_rejects_bad_range(self):
        with pytest.raises(ValueError, match="low must be <= high"):
            T.build("cutout", low=0.6, high=0.5)
        with pytest.raises(ValueError, match=r"high must be in \(0.0, 1.0\]"):
            T.build("cutout:high=1.5")


@pytest.mark.parametrize("shape", [(5, 3, 7, 11), (5, 3, 2, 30, 20), (3, 1, 70, 9)])
def test_box_weights_table_path_equals_arithmetic_path(shape, monkeypatch):
    from nda_plugins.transforms import _functional as F

    start, size = S.boxes(shape[0], shape[-2], shape[-1], low=1 / 3, high=1 / 2, generator=_gen("cpu"), device="cpu")
    expected = torch.zeros(shape[0], shape[-2], shape[-1])
    for i in range(shape[0]):  # the obvious reference
        (t, l), (h, w) = start[i].tolist(), size[i].tolist()
        expected[i, t:t + h, l:l + w] = 1
    for side in (0, 1000):  # 0: arithmetic path only; 1000: table path only
        monkeypatch.setattr(F, "_BOX_TABLE_MAX_SIDE", side)
        got = F.box_weights(shape, start, size, torch.float32)
        assert got.shape == (shape[0],) + (1,) * (len(shape) - 3) + shape[-2:]
        assert torch.equal(got.reshape(shape[0], shape[-2], shape[-1]), expected)
        for dtype in (torch.float32, torch.float64):  # the area comes with the axes, on both paths
            rows, cols, area = F.box_axes(shape, start, size, dtype, with_area=True)
            assert area.dtype == dtype and area.shape == (shape[0],) + (1,) * (len(shape) - 1)
            assert torch.equal(area.flatten(), (size[:, 0] * size[:, 1]).to(dtype))
            assert torch.equal((rows * cols).reshape(shape[0], shape[-2], shape[-1]), expected.to(dtype))


def _box_frequencies(start, size, height, width):
    """Observed frequency of every (top, height) and (left, width) pair."""
    rows = torch.zeros(height + 1, height + 1)
    cols = torch.zeros(width + 1, width + 1)
    rows.index_put_((start[:, 0], size[:, 0]), torch.ones(len(start)), accumulate=True)
    cols.index_put_((start[:, 1], size[:, 1]), torch.ones(len(start)), accumulate=True)
    return rows / len(start), cols / len(start)


def _expected_box_probabilities(n, lo, hi):
    p = torch.zeros(n + 1, n + 1)
    for side in range(lo, hi + 1):
        p[: n - side + 1, side] = 1 / ((hi - lo + 1) * (n - side + 1))
    return p


@pytest.mark.parametrize("table", [True, False], ids=["searchsorted-table", "arithmetic"])
def test_box_distribution_is_size_uniform_then_position_uniform(table, monkeypatch):
    """Both samplers draw the side uniformly, then the position uniformly where the box fits."""
    if not table:
        monkeypatch.setattr(S, "_BOX_TABLE_MAX_PAIRS", 0)
    n_draws, height, width = 200_000, 12, 9
    start, size = S.boxes(n_draws, height, width, low=1 / 3, high=1 / 2, generator=_gen("cpu"), device="cpu")
    assert start.dtype == size.dtype == torch.long and start.shape == size.shape == (n_draws, 2)
    rows, cols = _box_frequencies(start, size, height, width)
    for got, n, (lo, hi) in ((rows, height, (4, 6)), (cols, width, (3, 4))):
        expected = _expected_box_probabilities(n, lo, hi)
        assert torch.equal(got > 0, expected > 0)  # exactly the valid pairs, all of them
        assert (got - expected).abs().max() < 0.0025  # about 6 standard errors of the likeliest pair


@pytest.mark.parametrize("u", [0.0, 1.0 - 2.0**-24], ids=["lowest", "highest"])
def test_boxes_at_the_extreme_uniforms(u, monkeypatch):
    """u = 1 - 2**-24 makes u + 1 round to 2.0 in float32; the box must still be a valid one."""
    monkeypatch.setattr(S, "uniform", lambda shape, **_: torch.full(shape, u))
    start, size = S.boxes(3, 12, 9, low=1 / 3, high=1 / 2, generator=None, device="cpu")
    expected_size = [4, 3] if u == 0.0 else [6, 4]
    expected_start = [0, 0] if u == 0.0 else [12 - 6, 9 - 4]
    assert size.tolist() == [expected_size] * 3 and start.tolist() == [expected_start] * 3


def test_partners_table_and_arithmetic_paths_agree(monkeypatch):
    """The cached-table lookup is only a faster way to the same partners from the same draws."""
    table = S.partners(37, generator=_gen("cpu", 5), device="cpu")
    monkeypatch.setattr(S, "_PARTNER_TABLE_MAX", 0)
    arithmetic = S.partners(37, generator=_gen("cpu", 5), device="cpu")
    assert torch.equal(table, arithmetic)
    assert not (table == torch.arange(37)).any()


class TestCutMix:
    def test_values(self):
        x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4) * 5])
        params = {"partner": torch.tensor([1, 0]), "start": torch.tensor([[0, 1], [2, 0]]),
                  "size": torch.tensor([[2, 2], [2, 2]])}
        y = T.build("cutmix")(x, params=params)
        e0 = torch.zeros(4, 4)
        e0[0:2, 1:3] = 5
        e1 = torch.full((4, 4), 5.0)
        e1[2:4, 0:2] = 0
        assert torch.equal(y[0, 0], e0) and torch.equal(y[1, 0], e1)


class TestMixup:
    def test_values(self):
        x = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 10.0)])
        params = {"partner": torch.tensor([1, 0]), "gamma": torch.tensor([0.25, 0.5])}
        y = T.build("mixup")(x, params=params)
        assert torch.allclose(y[0], torch.full((1, 2, 2), 7.5)) and torch.allclose(y[1], torch.full((1, 2, 2), 5.0))

    def test_gamma_distribution(self):
        g = S.beta_symmetric(40000, 2, generator=_gen("cpu"), device="cpu")
        # Beta(2, 2): mean 1/2, variance 1/20
        assert abs(g.mean() - 0.5) < 0.01 and abs(g.var() - 0.05) < 0.003
        t = T.build("mixup")
        t(torch.rand(2000, 1, 2, 2), generator=_gen("cpu"))
        gamma = t.last_params["gamma"]
        assert gamma.min() >= 0.1 and gamma.max() <= 0.9

    @pytest.mark.parametrize("alpha", [1, 2, 3])
    def test_gamma_is_beta_mapped_into_low_high(self, alpha):
        low, high = 0.2, 0.7
        g = S.beta_symmetric(60000, alpha, generator=_gen("cpu"), device="cpu", low=low, high=high)
        unit = (g - low) / (high - low)
        assert unit.min() >= 0 and unit.max() < 1
        # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
        assert abs(unit.mean() - 0.5) < 0.01 and abs(unit.var() - 1 / (4 * (2 * alpha + 1))) < 0.003

    def test_rejects_bad_alpha(self):
        with pytest.raises(ValueError, match="alpha must be >= 1"):
            T.build("mixup:alpha=0")
        with pytest.raises(ValueError, match="low < high < 1"):
            T.build("mixup", high=1.0)


class TestNoise:
    def test_values(self):
        x = torch.zeros(1, 1, 2, 2)
        eps = torch.tensor([[[[1.0, -1.0], [2.0, 0.5]]]])
        y = T.build("noise:std=0.5")(x, params={"eps": eps})
        assert torch.equal(y, eps * 0.5)

    def test_parallel_fill_is_gaussian_deterministic_and_chunk_independent(self, monkeypatch):
        monkeypatch.setattr(S, "NORMAL_CHUNK", 1000)
        x = torch.zeros(8, 3, 20, 25)  # 12000 elements -> 12 chunks, parallel path
        t = T.build("noise:std=1")
        a = t(x, generator=_gen("cpu", 3))
        b = t(x, generator=_gen("cpu", 3))
        assert torch.equal(a, b)
        flat = a.view(-1)
        assert abs(flat.mean()) < 0.05 and abs(flat.std() - 1) < 0.05
        assert not torch.equal(flat[:1000], flat[1000:2000])
        cl = t(x.contiguous(memory_format=torch.channels_last), generator=_gen("cpu", 3))
        assert cl.is_contiguous(memory_format=torch.channels_last) and abs(cl.std() - 1) < 0.05

    def test_uint8_clamps(self):
        x = torch.tensor([[[[250, 5]]]], dtype=torch.uint8)
        y = T.build("noise:std=0.1")(x, params={"eps": torch.tensor([[[[1.0, -1.0]]]])})
        assert y.tolist() == [[[[255, 0]]]]


class TestSource:
    def test_values_and_labels(self):
        source = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous()
        labels = torch.tensor([10, 11, 12, 13, 14])
        t = T.build("source", source=source, labels=labels)
        y = t(torch.zeros(3, 1, 2, 2), params={"index": torch.tensor([4, 0, 2])})
        assert y[:, 0, 0, 0].tolist() == [4.0, 0.0, 2.0]
        images, lab = t.draw(4, generator=_gen("cpu"))
        assert images.shape == (4, 1, 2, 2) and torch.equal(lab, images[:, 0, 0, 0].long() + 10)

    def test_dataset_source(self):
        data = [(torch.full((1, 2, 2), float(i)), i) for i in range(4)]
        t = T.build("source", source=data)
        y = t(torch.zeros(6, 1, 2, 2), generator=_gen("cpu"))
        assert set(y[:, 0, 0, 0].tolist()) <= {0.0, 1.0, 2.0, 3.0}

    def test_errors(self):
        with pytest.raises(ValueError, match="needs source="):
            T.build("source")
        with pytest.raises(ValueError, match="must match"):
            T.build("source", source=torch.rand(3, 1, 4, 4))(torch.rand(2, 1, 2, 2))


# ---------------------------------------------------------------------------------------------
# Specs and building
# ---------------------------------------------------------------------------------------------


def test_parse_spec():
    assert T.parse_spec("jigsaw") == ("jigsaw", {})
    assert T.parse_spec(" mixup:alpha=2, low=0.2,flag=true,x=none,s=abc ") == (
        "mixup", {"alpha": 2, "low": 0.2, "flag": True, "x": None, "s": "abc"})
    for bad in ("", ":grid=2", "jigsaw:grid", "jigsaw:grid=2,grid=3"):
        with pytest.raises(ValueError, match="spec"):
            T.parse_spec(bad)


def test_build_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown transform 'jigsw'.*jigsaw"):
        T.build("jigsw")
    with pytest.raises(TypeError, match=r"does not take option\(s\) \['size'\].*grid"):
        T.build("jigsaw:size=3")
    with pytest.raises(ValueError, match="given twice with different values"):
        T.build("jigsaw:grid=2", grid=3)


def test_build_passes_callables_through():
    t = T.build("jigsaw")
    assert T.build(t) is t


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on CPU needs a C compiler")
def test_compile_traces_apply_as_one_graph_and_matches_eager():
    """``t.compile()``: the deterministic half of every built-in transform traces as one graph
    (fullgraph=True), draws the same parameters and gives the eager output."""
    small, large = _batch((4, 3, 16, 16)), _batch((2, 3, 80, 80))  # large: cutout's box-rows mean
    builtin = ["jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise", "source"]
    cases = [(n, small) for n in builtin] + [("cutout", large)]
    from torch._inductor.compile_fx import compile_fx

    traced = []

    def inductor_counting_graphs(graph, example_inputs):
        traced.append(graph)
        return compile_fx(graph, example_inputs)

    for name, x in cases:
        eager = _make(name, x)
        compiled = _make(name, x).compile(fullgraph=True, backend=inductor_counting_graphs)
        before = len(traced)
        got = compiled(x, generator=_gen("cpu"))
        assert len(traced) == before + 1, f"{name}: the call did not go through torch.compile"
        torch.testing.assert_close(got, eager(x, generator=_gen("cpu")))
        for key, value in eager.last_params.items():
            assert torch.equal(compiled.last_params[key], value), f"{name}: {key} drawn differently"
        assert torch.equal(compiled(x, generator=_gen("cpu")), got), f"{name}: compiled output not reproducible"


def test_subclass_that_skips_the_base_init_still_works():
    """Third-party transforms may not call ``NegativeTransform.__init__``."""

    class Flip(T.NegativeTransform):
        name = "flip"

        def __init__(self):  # no super().__init__()
            pass

        def sample(self, x, generator, *, external_partner=False):
            return {}

        def apply(self, x, params, partner):
            return x.flip(-1)

    x = _batch((2, 3, 4, 4))
    assert torch.equal(Flip()(x), x.flip(-1))


def test_compiled_transform_pickles_and_compiles_again_where_loaded():
    import copy
    import pickle

    x = _batch((4, 3, 8, 8))
    plain = pickle.loads(pickle.dumps(T.build("cutmix", low=0.25)))
    assert plain._compiled_apply is None and plain.low == 0.25
    assert torch.equal(plain(x, generator=_gen("cpu")), T.build("cutmix", low=0.25)(x, generator=_gen("cpu")))
    compiled = T.build("cutmix", low=0.25).compile(mode="reduce-overhead")
    for loaded in (pickle.loads(pickle.dumps(compiled)), copy.deepcopy(compiled)):
        assert loaded.low == 0.25 and loaded._compiled_apply is not None
        assert loaded._compile_options == {"dynamic": False, "mode": "reduce-overhead"}


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_normal_fill_is_the_same_for_every_thread_count(threads, monkeypatch):
    """Chunk i of the batch is filled by its own generator seeded from the caller's one, whether
    the chunks run in turn (1 thread) or on the pool; the result never depends on the threads."""
    monkeypatch.setattr(S, "NORMAL_CHUNK", 1000)
    n = 4500  # 5 chunks, the last one short
    seeds = torch.randint(0, 2**62, (5,), generator=torch.Generator().manual_seed(7)).tolist()
    expected = torch.cat([torch.empty(min(1000, n - i * 1000)).normal_(generator=torch.Generator().manual_seed(s))
                          for i, s in enumerate(seeds)])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out = S.normal_parallel_(torch.empty(n), generator=torch.Generator().manual_seed(7))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(out, expected)
