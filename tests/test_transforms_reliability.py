"""Transforms under bad or edge input (issue 15): one parametrized test per class of failure,
each over every registered transform (as timm tests every registered model).

Classes: a negative never equals its source; NaN/inf pixels stay where they are (cutout and
cutmix equal a per-sample reference written here); ``params=`` replays must fit ``x``; value
ranges and non-finite options; gradients flow through every differentiable transform.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from nda_plugins import transforms as T
from nda_plugins.transforms import _builtin as B
from nda_plugins.transforms import _functional as F

_TORCH = tuple(int(part) for part in torch.__version__.split(".")[:2])

NAMES = T.available()
BOX = ["cutout", "cutmix"]


def _batch(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return torch.rand(shape, generator=g).to(dtype)


def _make(name, x, **options):
    return T.build(name, **{**T.example_options(name, x), **options})


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


def _is_pairwise(name):
    return getattr(T.registry().factory(name), "pairwise", False)


# ----------------------------------------------------------------------------------------------
# 1. A negative never equals its source: a different negative, or a clear ValueError
# ----------------------------------------------------------------------------------------------

def _case_tiny(h, w):
    return lambda name: (_batch((4, 3, h, w)), {}, {})


def _case_expanded(name):
    return _batch((1, 3, 8, 8)).expand(8, 3, 8, 8), {}, {}


def _case_partner_is_x(name):
    x = _batch((4, 3, 8, 8))
    return x, {"partner": x}, {}


def _case_partner_equal_values(name):
    x = _batch((4, 3, 8, 8))
    partner = _batch((4, 3, 8, 8), seed=9)
    partner[2] = x[2]  # one partner image equal to its source, in another tensor
    return x, {"partner": partner}, {}


def _case_box_options(options):
    def case(name):
        if name not in BOX:
            pytest.skip("box options only")
        return _batch((4, 3, 8, 8)), {}, options
    return case


CASES = {
    "1x1": _case_tiny(1, 1),
    "1x2": _case_tiny(1, 2),
    "2x2": _case_tiny(2, 2),
    "expanded-batch": _case_expanded,
    "partner-is-x": _case_partner_is_x,
    "partner-equal-values": _case_partner_equal_values,
    "box-high=1": _case_box_options({"high": 1.0}),
    "box-low=1,high=1": _case_box_options({"low": 1.0, "high": 1.0}),
}

# Which (case, built-in transform) pairs must refuse (everything else must make negatives):
# the guarantee is kept by construction wherever the data allows it.
MUST_REFUSE = {
    "1x1": {"jigsaw", "stitch", "cutout", "cutmix"},
    "1x2": {"jigsaw", "stitch"},
    "expanded-batch": {"stitch", "cutmix", "mixup"},
    "partner-is-x": {"jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise"},  # non-pairwise: takes no partner
    "partner-equal-values": {"jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise"},
    "box-low=1,high=1": {"cutmix"},  # the box would be the whole partner image
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_never_equal_to_source_or_a_clear_error(name, case):
    x, call, options = CASES[case](name)
    try:
        t = _make(name, x, **options)
        if not getattr(t, "distinct_from_source", True):
            pytest.skip(f"{name} promises nothing about its draws")
        outputs = [t(x, generator=_gen(seed), **call) for seed in range(4)]
    except ValueError as error:
        message = str(error)
        assert name in message or "partner" in message or "low" in message, message
        refused = True
    else:
        refused = False
        for y in outputs:
            same = (y == x).flatten(1).all(dim=1)
            assert not same.any(), f"{name}/{case}: negatives {same.nonzero().flatten().tolist()} equal their source"
    if name in B.BUILTINS:
        assert refused == (name in MUST_REFUSE.get(case, set())), f"{name}/{case}: refused={refused}"


def test_expanded_batch_message_says_why():
    with pytest.raises(ValueError, match=r"expanded along the batch.*partner="):
        T.build("cutmix")(_batch((1, 3, 8, 8)).expand(5, 3, 8, 8))


def test_cutmix_box_never_covers_the_whole_image():
    x = _batch((2000, 1, 3, 2))
    t = T.build("cutmix", high=1.0)
    t(x, generator=_gen())
    assert not (t.last_params["size"] == torch.tensor([3, 2])).all(dim=1).any()
    assert (t.last_params["size"] <= torch.tensor([2, 1])).all()


# ----------------------------------------------------------------------------------------------
# 2. NaN and inf pixels stay where they are (cutout, cutmix vs the obvious per-sample reference)
# ----------------------------------------------------------------------------------------------

def reference_box_transform(name, x, params, partner=None):
    """The obvious per-sample loop: copy ``x``, then overwrite each box."""
    out = x.clone()
    for i in range(x.shape[0]):
        (top, left), (h, w) = params["start"][i].tolist(), params["size"][i].tolist()
        box = (i, Ellipsis, slice(top, top + h), slice(left, left + w))
        if name == "cutout":
            mean = x[box].double().mean(dim=(-2, -1), keepdim=True)
            out[box] = (mean.round() if not x.dtype.is_floating_point else mean).to(x.dtype)
        else:
            source = partner[i] if partner is not None else x[int(params["partner"][i])]
            out[box] = source[Ellipsis, top:top + h, left:left + w]
    return out


def _poison(x, value, count, seed):
    """``x`` with ``count`` random elements set to ``value``."""
    x = x.clone()
    g = torch.Generator().manual_seed(seed)
    flat = x.view(-1) if x.is_contiguous() else None
    index = torch.randint(0, x.numel(), (count,), generator=g)
    if flat is None:
        x = x.contiguous()
        flat = x.view(-1)
    flat[index] = value
    return x


LAYOUTS = {
    "small": ((6, 3, 12, 10), torch.contiguous_format),  # finite check + lerp or torch.where
    "small-channels-last": ((6, 3, 12, 10), torch.channels_last),  # cutout: the matmul reads it in place
    "small-video": ((3, 2, 3, 12, 10), torch.contiguous_format),
    "small-one-channel": ((2, 1, 5, 4), torch.contiguous_format),
    "large": ((5, 3, 70, 90), torch.contiguous_format),  # clone + one strided view per box
    "large-channels-last": ((5, 3, 70, 90), torch.channels_last),
    "video-large": ((3, 2, 3, 66, 80), torch.contiguous_format),
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), "mixed-inf"], ids=str)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", BOX)
def test_non_finite_pixels_match_the_per_sample_reference(name, layout, value):
    shape, memory_format = LAYOUTS[layout]
    x = _batch(shape)
    for seed in range(3):
        if value == "mixed-inf":
            bad = _poison(_poison(x, float("inf"), 4, seed), float("-inf"), 4, seed + 100)
        else:
            bad = _poison(x, value, 6, seed)
        bad = bad.contiguous(memory_format=memory_format)
        t = T.build(name)
        y = t(bad, generator=_gen(seed))
        expected = reference_box_transform(name, bad, t.last_params)
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-5, equal_nan=True)
        # and NaN did not spread: images without a non-finite pixel in play stay finite
        assert torch.isnan(y).sum() == torch.isnan(expected).sum()


def _skip_zero_weights(masks, planes):
    """A matmul that skips zero weights (as some BLAS kernels may): NaN and inf there vanish."""
    weights = masks.transpose(1, 2)
    return (weights * torch.where(weights != 0, planes, 0)).sum(dim=1, keepdim=True)


def _skip_trailing_zeros(masks, planes, _bmm=torch.bmm):
    """A matmul that stops at each mask's last nonzero weight: it skips a run of zeros only."""
    last = int(masks.nonzero()[:, -1].max()) + 1
    return _bmm(masks[..., :last].contiguous(), planes[:, :last].contiguous())


@pytest.mark.parametrize("shape, memory_format", [((6, 3, 12, 10), torch.contiguous_format),
                                                  ((6, 3, 12, 10), torch.channels_last),
                                                  ((2, 1, 5, 4), torch.contiguous_format)], ids=str)
@pytest.mark.parametrize("matmul", [None, _skip_zero_weights, _skip_trailing_zeros], ids=["torch", "skips-zeros", "skips-a-run"])
def test_cutout_means_by_matmul_only_where_the_kernel_propagates_nan(shape, memory_format, matmul, monkeypatch):
    """Small-image cutout sums its boxes with one matmul, exact for NaN and inf only if the
    kernel computes 0 * nan; one that skips zero weights (or a run of them) is found by the
    check and the mean comes from the product instead: the output stays exact either way."""
    from nda_plugins.transforms import _functional as F

    F.matmul_sums_propagate.cache_clear()
    monkeypatch.setattr(F, "matmul_sums_propagate", F.matmul_sums_propagate.__wrapped__)  # no cache
    monkeypatch.setattr(F, "_matmul_mean", F._matmul_mean.__wrapped__)  # which caches its answer too
    if matmul is not None:
        monkeypatch.setattr(torch, "bmm", matmul)
    used = []
    monkeypatch.setattr(F, "box_mean", lambda *a, _real=F.box_mean: used.append(1) or _real(*a))
    b, c, h, w = shape
    assert F.matmul_sums_propagate(b, h * w, c, (c * h * w, 1, h * w), torch.float32) is (matmul is None)
    assert F.matmul_sums_propagate(1, 2, 1, (2, 1, 2), torch.float32) is (matmul is None)  # a 2-pixel image
    x = _batch(shape).contiguous(memory_format=memory_format)
    for seed, value in enumerate([float("nan"), float("inf"), float("-inf")]):
        bad = _poison(x, value, 3, seed).contiguous(memory_format=memory_format)
        t = T.build("cutout")
        y = t(bad, generator=_gen(seed))
        torch.testing.assert_close(y, reference_box_transform("cutout", bad, t.last_params), rtol=0, atol=1e-5, equal_nan=True)
    t = T.build("cutout")
    y = t(x, generator=_gen())
    torch.testing.assert_close(y, reference_box_transform("cutout", x, t.last_params), rtol=0, atol=1e-6)
    assert bool(used) is (matmul is not None)  # the product only where the matmul cannot be trusted


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=str)
@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 3, 80, 72)], ids=str)
def test_non_finite_partner_images_stay_in_their_boxes(shape, value):
    x = _batch(shape)
    partner = _poison(_batch(shape, seed=3), value, 8, 0)
    t = T.build("cutmix")
    y = t(x, partner=partner, generator=_gen())
    torch.testing.assert_close(y, reference_box_transform("cutmix", x, t.last_params, partner), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.uint8, torch.float64], ids=str)
@pytest.mark.parametrize("size", [8, 80])
@pytest.mark.parametrize("name", BOX)
def test_box_transforms_match_the_reference_in_every_dtype(name, size, dtype):
    x = _batch((4, 3, size, size), dtype)
    t = T.build(name)
    y = t(x, generator=_gen())
    expected = reference_box_transform(name, x, t.last_params)
    atol = 1 if dtype == torch.uint8 else 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(y.double(), expected.double(), rtol=0, atol=atol)


def _path_taken(t, x):
    return (t._path(x) if t.name == "cutmix" else t._path(x, check_finite=False))[0]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=str)
@pytest.mark.parametrize("name", BOX)
def test_large_path_reads_and_writes_only_each_sample_s_box(name, memory_format):
    """The large CPU path views every box through a nested view over the storage: inputs that
    start inside a larger storage (a slice of a batch) must still be read at their own offset,
    and the partner batch passed separately at its own."""
    if _TORCH >= (2, 11):  # the PyTorch versions this suite runs on have it: the fast path cannot vanish
        assert F.nested_views_available()
    elif not F.nested_views_available():
        pytest.skip(f"PyTorch {torch.__version__} has no usable nested views (the box transforms take the blend path)")
    whole = _batch((9, 3, 70, 90)).contiguous(memory_format=memory_format)
    x = whole[2:7]
    assert x.storage_offset() > 0
    t = T.build(name)
    assert _path_taken(t, x) == "large"
    for seed in range(3):
        y = t(x, generator=_gen(seed))
        torch.testing.assert_close(y, reference_box_transform(name, x, t.last_params), rtol=0, atol=1e-6)
        assert y.is_contiguous(memory_format=memory_format)
    assert torch.equal(whole[2:7], x)  # nothing written into the input's storage
    if name == "cutmix":
        partner = _batch((8, 3, 70, 90), seed=4)[3:8]
        y = t(x, partner=partner, generator=_gen())
        torch.testing.assert_close(y, reference_box_transform(name, x, t.last_params, partner), rtol=0, atol=0)


@pytest.mark.parametrize("size", [8, 80])
def test_cutmix_gradient_reaches_partner_images_that_require_grad(size):
    x = _batch((4, 3, size, size))
    partner = _batch((4, 3, size, size), seed=5).requires_grad_()
    t = T.build("cutmix")
    y = t(x, partner=partner, generator=_gen())
    y.sum().backward()
    expected = reference_box_transform("cutmix", torch.zeros_like(x), t.last_params, torch.ones_like(x))
    assert torch.equal(partner.grad, expected)  # 1 inside each box, 0 elsewhere


@pytest.mark.parametrize("name", BOX)
def test_large_images_without_nested_views_take_the_other_paths(name, monkeypatch):
    """The box views rest on a private PyTorch function; where it is missing, large images
    must still give the exact result through the blend or mask path."""
    monkeypatch.setattr(F, "nested_views_available", lambda: False)
    x = _batch((4, 3, 70, 90))
    t = T.build(name)
    assert _path_taken(t, x) == "blend"
    bad = _poison(x, float("nan"), 3, 0)
    for batch in (x, bad):
        y = t(batch, generator=_gen())
        expected = reference_box_transform(name, batch, t.last_params)
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-6, equal_nan=True)


def _unusable_views(*args):
    raise RuntimeError("buffer_storage_size == num_elements_nested_size INTERNAL ASSERT FAILED")


@pytest.mark.parametrize("broken", ["missing", "raises", "copies"])
def test_nested_views_probe_refuses_missing_failing_or_copying_views(broken, monkeypatch):
    """``nested_views_available`` writes through two views of part of a buffer: a PyTorch without
    the function, one that refuses such views (2.3) or one whose views do not share the
    buffer's memory must send the box transforms to the blend path, not fail or write nothing."""
    real = getattr(torch, "_nested_view_from_buffer", None)
    if real is None and broken == "copies":
        pytest.skip(f"PyTorch {torch.__version__} has no nested views to wrap")
    if broken == "missing":
        monkeypatch.delattr(torch, "_nested_view_from_buffer", raising=False)
    elif broken == "raises":
        monkeypatch.setattr(torch, "_nested_view_from_buffer", _unusable_views)
    else:
        monkeypatch.setattr(torch, "_nested_view_from_buffer", lambda buffer, *rest: real(buffer.clone(), *rest))
    F.nested_views_available.cache_clear()
    try:
        assert F.nested_views_available() is False
        x = _batch((4, 3, 70, 90))
        t = T.build("cutmix")
        assert _path_taken(t, x) == "blend"
        y = t(x, generator=_gen())
        torch.testing.assert_close(y, reference_box_transform("cutmix", x, t.last_params), rtol=0, atol=0)
    finally:
        monkeypatch.undo()
        F.nested_views_available.cache_clear()
    if _TORCH >= (2, 11):
        assert F.nested_views_available()  # the probe passes again once PyTorch's own is back


@pytest.mark.parametrize("size", [8, 80])
@pytest.mark.parametrize("name", BOX)
def test_box_params_replay_in_any_integer_dtype(name, size):
    x = _batch((4, 3, size, size))
    t = T.build(name)
    y = t(x, generator=_gen())
    params = {key: value.to(torch.int32) for key, value in t.last_params.items()}
    assert torch.equal(t(x, params=params), y)


def test_large_cutout_mean_falls_back_when_a_box_row_is_not_finite():
    """The large path's mean multiplies the box rows' pixels outside the box by 0; an inf there
    must not reach the mean (the exact path takes over)."""
    x = _batch((4, 3, 70, 90))
    t = T.build("cutout")
    t(x, generator=_gen())
    params = t.last_params
    (top, left), (h, w) = params["start"][1].tolist(), params["size"][1].tolist()
    column = left + w if left + w < 90 else left - 1  # in a box row, just outside the box
    bad = x.clone()
    bad[1, 0, top, column] = float("inf")
    y = t(bad, params=params)
    torch.testing.assert_close(y, reference_box_transform("cutout", bad, params), rtol=0, atol=1e-6)
    assert torch.isfinite(y[1, :, top:top + h, left:left + w]).all()


@pytest.mark.parametrize("name", BOX)
def test_the_three_box_paths_agree(name, monkeypatch):
    """large (CPU: cutmix's box runs, cutout's box-rows mean), blend (finite CPU batches) and
    mask (exact torch.where) give the same output on the same parameters."""
    x = _batch((5, 3, 4, 30, 40))
    t = T.build(name)
    default = t(x, generator=_gen())
    assert t._plan(x).fill is not None and t._plan(x).draw_and_fill is not None  # the blend in one call
    # the paths forced below are apply's general route, which a plan with a fill skips
    monkeypatch.setattr(type(t), "_fill_fns", lambda self, plan, x: (None, None))
    outputs = {}
    paths = ("large", "blend", "mask") if F.nested_views_available() else ("blend", "mask")
    for path in paths:
        monkeypatch.setattr(B._BoxTransform, "_path", lambda self, x, *others, p=path, **_: (p, self._plan(x)))
        outputs[path] = T.build(name)(x, params=t.last_params)  # a new transform: plans without a fill
    for path, y in outputs.items():
        torch.testing.assert_close(y, default, rtol=0, atol=1e-6, msg=path)


# ----------------------------------------------------------------------------------------------
# 3. params= replays must fit x
# ----------------------------------------------------------------------------------------------

def _mixup_reference(x, params, partner=None):
    """``gamma * x + (1 - gamma) * partner`` per sample, in float64 (the mathematical mix: an inf
    stays inf unless it meets an inf of the other sign)."""
    other = x[params["partner"]] if partner is None else partner
    gamma = params["gamma"].double().view((-1,) + (1,) * (x.dim() - 1))
    return (gamma * x.double() + (1 - gamma) * other.double()).to(x.dtype)


def _count_calls(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


MIX_LAYOUTS = {
    "image": ((6, 3, 16, 16), torch.contiguous_format),
    "channels-last": ((6, 3, 16, 16), torch.channels_last),
    "video": ((4, 3, 2, 16, 16), torch.contiguous_format),
    "video-channels-last": ((4, 3, 2, 16, 16), torch.channels_last_3d),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("layout", MIX_LAYOUTS)
def test_large_mixup_mixes_in_one_pass_like_the_reference(layout, dtype, monkeypatch):
    """Large CPU batches are mixed by one embedding_bag over rows (``F.mix_rows``); the
    threshold is lowered so that a small batch takes that path too."""
    monkeypatch.setattr(F, "MIX_ROWS_MIN_BYTES", 0)
    calls = _count_calls(monkeypatch, F, "mix_rows")
    shape, memory_format = MIX_LAYOUTS[layout]
    x = _batch(shape, dtype).contiguous(memory_format=memory_format)
    before = x.clone()
    t = T.build("mixup")
    for seed in range(3):
        y = t(x, generator=_gen(seed))
        torch.testing.assert_close(y, _mixup_reference(x, t.last_params), rtol=0, atol=1e-6)
        assert y.dtype == dtype and y.is_contiguous(memory_format=memory_format)
        assert not torch.equal(y, x)
    assert len(calls) == 3 and torch.equal(x, before)
    # a replay with int32 partners gives the same negatives
    params = {**t.last_params, "partner": t.last_params["partner"].to(torch.int32)}
    assert torch.equal(t(x, params=params), y)


def test_large_mixup_reads_a_slice_at_its_own_offset(monkeypatch):
    monkeypatch.setattr(F, "MIX_ROWS_MIN_BYTES", 0)
    calls = _count_calls(monkeypatch, F, "mix_rows")
    whole = _batch((9, 3, 16, 16))
    x = whole[2:8]
    assert x.storage_offset() > 0 and x.is_contiguous()
    t = T.build("mixup")
    y = t(x, generator=_gen())
    torch.testing.assert_close(y, _mixup_reference(x, t.last_params), rtol=0, atol=1e-6)
    assert len(calls) == 1 and torch.equal(whole[2:8], x)


def test_large_mixup_keeps_nan_and_inf(monkeypatch):
    monkeypatch.setattr(F, "MIX_ROWS_MIN_BYTES", 0)
    x = _poison(_batch((6, 3, 16, 16)), float("nan"), 3, 0)
    x = _poison(x, float("inf"), 3, 1)
    x = _poison(x, float("-inf"), 3, 2)
    t = T.build("mixup")
    y = t(x, generator=_gen())
    torch.testing.assert_close(y, _mixup_reference(x, t.last_params), rtol=0, atol=1e-6, equal_nan=True)
    assert y.isnan().any() and y.isinf().any()


def test_mixup_at_the_default_threshold():
    """The one-pass path is on by default only from MIX_ROWS_MIN_BYTES, and gives the
    reference there too (a 12 MiB batch)."""
    x = _batch((16, 3, 256, 256))
    assert F.mix_rows_available(x) and not F.mix_rows_available(x[:1])
    t = T.build("mixup")
    y = t(x, generator=_gen())
    torch.testing.assert_close(y, _mixup_reference(x, t.last_params), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["grad", "no-row-length", "strided", "half", "external-partner"])
def test_mixup_takes_the_gather_blend_where_one_pass_does_not_apply(case, monkeypatch):
    monkeypatch.setattr(F, "MIX_ROWS_MIN_BYTES", 0)
    calls = _count_calls(monkeypatch, F, "mix_rows")
    x = _batch((6, 1, 2, 1031) if case == "no-row-length" else (6, 3, 16, 16))  # 1031: prime
    kwargs = {}
    if case == "grad":
        x.requires_grad_()
    elif case == "strided":
        x = _batch((6, 3, 16, 32))[..., ::2]
    elif case == "half":
        x = x.to(torch.bfloat16)
    elif case == "external-partner":
        kwargs["partner"] = _batch((6, 3, 16, 16), seed=3)
    t = T.build("mixup")
    y = t(x, generator=_gen(), **kwargs)
    expected = _mixup_reference(x.detach().float(), t.last_params, kwargs.get("partner"))
    torch.testing.assert_close(y.detach().float(), expected, rtol=0, atol=1e-2 if case == "half" else 1e-6)
    assert calls == []


def test_mix_row_length():
    assert F.mix_row_length(3 * 256 * 256) == 1024
    assert F.mix_row_length(3 * 16 * 16) == 768
    assert F.mix_row_length(3 * 96 * 96) == 1024
    assert F.mix_row_length(257) == 257 and F.mix_row_length(2 * 1031) == 0 and F.mix_row_length(100) == 0


SIZE_FREE = {"jigsaw", "stitch", "mixup"}  # their parameters do not depend on the image size


@pytest.mark.parametrize("name", NAMES)
def test_replayed_params_must_fit_x(name):
    x = _batch((4, 3, 8, 8))
    t = _make(name, x)
    y = t(x, generator=_gen())
    assert torch.equal(t(x, params=t.last_params), y)  # a fitting replay is exact
    params = t.last_params
    for other_batch in (2, 6):
        with pytest.raises(ValueError, match=r"do not fit x|must match|must have shape"):
            t(_batch((other_batch, 3, 8, 8)), params=params)
    bigger = _batch((4, 3, 16, 16))
    if name in SIZE_FREE:
        assert t(bigger, params=params).shape == bigger.shape
    elif name in B.BUILTINS:
        with pytest.raises(ValueError, match=r"do not fit x|must match"):
            t(bigger, params=params)
    with pytest.raises(TypeError, match="params must be a dict"):
        t(x, params=[1, 2])


@pytest.mark.parametrize("name", [n for n in NAMES if n in B.BUILTINS and n != "noise"])
def test_replayed_params_out_of_range_are_refused(name):
    x = _batch((4, 3, 8, 8))
    t = _make(name, x)
    t(x, generator=_gen())
    for key, value in t.last_params.items():
        broken = dict(t.last_params)
        if value.dtype.is_floating_point:
            broken[key] = value + 5.0
        else:
            broken[key] = value.clone()
            broken[key][0] = -1 if value.dim() == 1 else 99
        with pytest.raises(ValueError, match=f"do not fit x.*{key}|do not fit x"):
            t(x, params=broken)
        missing = {k: v for k, v in t.last_params.items() if k != key}
        with pytest.raises(ValueError, match=f"missing key '{key}'"):
            t(x, params=missing)


def test_replay_refuses_identity_and_self_partners():
    x = _batch((3, 3, 8, 8))
    with pytest.raises(ValueError, match="identity"):
        T.build("jigsaw")(x, params={"perm": torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 1, 0]])})
    with pytest.raises(ValueError, match="with itself"):
        T.build("mixup")(x, params={"partner": torch.tensor([1, 1, 0]), "gamma": torch.full((3,), 0.5)})


# ----------------------------------------------------------------------------------------------
# 4. Value ranges and option values
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source_dtype, x_dtype", [(torch.float32, torch.uint8), (torch.uint8, torch.float32),
                                                   (torch.uint8, torch.float16), (torch.float64, torch.float32)], ids=str)
def test_source_converts_value_ranges(source_dtype, x_dtype):
    source = _batch((5, 3, 4, 4), source_dtype, seed=2)
    t = T.build("source", source=source)
    x = _batch((3, 3, 4, 4), x_dtype)
    y = t(x, generator=_gen())
    drawn = source.index_select(0, t.last_params["index"])
    if x_dtype == torch.uint8:
        expected = (drawn * 255).round().to(torch.uint8)
    elif source_dtype == torch.uint8:
        expected = (drawn.float() / 255).to(x_dtype)
    else:
        expected = drawn.to(x_dtype)
    assert y.dtype == x_dtype and torch.equal(y, expected)
    images, _ = t.draw(2, generator=_gen(), like=x)
    assert images.dtype == x_dtype and float(images.float().max()) <= (255 if x_dtype == torch.uint8 else 1.0)


def _numeric_options(name):
    factory = T.registry().factory(name)
    target = factory.__init__ if inspect.isclass(factory) else factory
    for p in inspect.signature(target).parameters.values():
        if isinstance(p.default, float) and not isinstance(p.default, bool):
            yield p.name


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan, -1.0], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_float_options_refuse_non_finite_and_negative_values(name, bad):
    options = list(_numeric_options(name))
    if not options:
        pytest.skip(f"{name} has no float options")
    for option in options:
        with pytest.raises(ValueError, match=option):
            _make(name, _batch((2, 3, 8, 8)), **{option: bad})


# ----------------------------------------------------------------------------------------------
# 5. Gradients flow through every differentiable transform, the same values as without grad
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (3, 2, 70, 80)], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow(name, shape):
    x = _batch(shape, torch.float64)
    t = _make(name, x)
    plain = t(x, generator=_gen())
    leaf = x.clone().requires_grad_(True)
    y = t(leaf, params=t.last_params)
    torch.testing.assert_close(y.detach(), plain, rtol=0, atol=1e-12)
    if not y.requires_grad:  # e.g. negatives drawn from another source: not a function of x
        assert name in ("source",) or name not in B.BUILTINS
        return
    y.square().sum().backward()
    assert leaf.grad is not None and leaf.grad.shape == x.shape and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("name", [n for n in NAMES if n in B.BUILTINS and n != "source"])
def test_gradcheck(name):
    x = _batch((3, 2, 4, 4), torch.float64)
    t = _make(name, x)
    t(x, generator=_gen())
    params = t.last_params
    assert torch.autograd.gradcheck(lambda v: t(v, params=params), (x.clone().requires_grad_(True),))


# ----------------------------------------------------------------------------------------------
# the box transforms' per-shape plans
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BOX)
def test_box_plan_draws_what_the_sampling_functions_draw(name):
    """A plan only looks the draws' tables up once: the same generator state gives the same
    partners and boxes as S.partners and S.boxes, in the same order."""
    from nda_plugins.transforms import _sampling as S

    t = T.build(name)
    for shape in [(6, 3, 12, 10), (5, 2, 3, 9, 7), (3, 1, 100, 80)]:  # images, video, the large path
        x = _batch(shape)
        for seed in range(3):
            params = t.sample(x, _gen(seed), external_partner=False)
            g = _gen(seed)
            expected = {"partner": S.partners(shape[0], generator=g, device="cpu")} if name == "cutmix" else {}
            expected["start"], expected["size"] = S.boxes(shape[0], shape[-2], shape[-1], low=t.low, high=t.high,
                                                          generator=g, device="cpu", proper=name == "cutmix")
            assert params.keys() == expected.keys()
            assert all(torch.equal(params[k], expected[k]) for k in params)


@pytest.mark.parametrize("name", BOX)
def test_box_plan_follows_the_input_and_the_box_range(name):
    """One plan per shape, dtype, layout and box range: a new layout or a changed ``low``/``high``
    is never served an old plan, and the plans kept per transform are bounded."""
    t = T.build(name)
    x = _batch((6, 3, 12, 10))
    t(x, generator=_gen())
    first = t._plan(x)
    assert t._plan(x) is first and t._plan(x.clone()) is first
    assert t._plan(x.contiguous(memory_format=torch.channels_last)) is not first
    assert t._plan(x.double()) is not first
    t.low, t.high = 0.75, 1.0 if name == "cutout" else 0.9
    y = t(x, generator=_gen())
    assert (t.last_params["size"] >= torch.tensor([9, 8])).all()  # ceil(0.75 * 12), ceil(0.75 * 10)
    torch.testing.assert_close(y, reference_box_transform(name, x, t.last_params), rtol=0, atol=1e-6)
    for side in range(4, 40):  # many shapes: the kept plans stay few
        t(_batch((2, 1, side, side)), generator=_gen())
    assert 1 <= len(t._plans) <= 16
    with pytest.raises(ValueError, match="at least 2 pixels"):  # no plan for images no box fits
        t(_batch((2, 1, 1, 1)), generator=_gen())


@pytest.mark.parametrize("name", BOX)
def test_box_plans_are_not_pickled(name):
    """A plan holds tables and functions made for one process and device: a pickled or copied
    transform leaves them behind and makes the same negatives from the same generator."""
    import copy
    import pickle

    t = T.build(name)
    x = _batch((6, 3, 12, 10))
    y = t(x, generator=_gen())
    assert t._plans
    for loaded in (pickle.loads(pickle.dumps(t)), copy.deepcopy(t)):
        assert loaded._plans == {}
        assert torch.equal(loaded(x, generator=_gen()), y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(6, 3, 12, 10), (5, 2, 3, 9, 7), (4, 1, 64, 2)], ids=str)
@pytest.mark.parametrize("name", BOX)
def test_indicators_by_the_draws_index_equal_those_from_start_and_size(name, shape, dtype):
    """The boxes a plan has just drawn are read from a table indexed like the draw: the same
    rows, areas and columns as box_axes computes from their start and size."""
    t = T.build(name)
    x = _batch(shape, dtype)
    params = t.sample(x, _gen(), external_partner=False)
    plan = t._plan(x)
    assert plan.drawn is not None and plan.drawn[0] is params["start"]
    by_pick = plan.indicators(params, True)
    by_box = F.box_axes(x.shape, params["start"], params["size"], dtype, with_area=True)
    for got, expected in zip(by_pick, by_box):
        assert got.shape == expected.shape and got.dtype == dtype
        assert torch.equal(got, expected)
    assert torch.equal(by_pick[2].flatten(), (params["size"][:, 0] * params["size"][:, 1]).to(dtype))


def _same(a, b):
    """Equal bit for bit, NaN where NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


FILL_CASES = {
    "float32": ((6, 3, 12, 10), torch.float32, torch.contiguous_format),
    "float64": ((6, 3, 12, 10), torch.float64, torch.contiguous_format),
    "channels-last": ((6, 3, 12, 10), torch.float32, torch.channels_last),
    "video": ((3, 2, 3, 12, 10), torch.float32, torch.contiguous_format),
    "one-channel": ((2, 1, 5, 4), torch.float64, torch.contiguous_format),
}
BOX_CLASSES = {"cutout": B.Cutout, "cutmix": B.CutMix}


@pytest.mark.parametrize("poison", [None, float("nan"), float("inf")], ids=str)
@pytest.mark.parametrize("case", list(FILL_CASES))
@pytest.mark.parametrize("name", BOX)
def test_fill_in_one_call_equals_the_general_route(name, case, poison, monkeypatch):
    """Small float CPU batches: a box transform's plan makes its blend a single function
    (``fill``; with the draw, ``draw_and_fill``), which a call takes instead of choosing a
    path. It gives the general route's output bit for bit (a batch with a NaN or inf goes to
    the exact mask path), in x's layout, from the same draws, for fresh calls and replays."""
    shape, dtype, memory_format = FILL_CASES[case]
    x = _batch(shape, dtype)
    if poison is not None:
        x = _poison(x, poison, 3, seed=4)
    x = x.contiguous(memory_format=memory_format)
    t = T.build(name)
    gens = [_gen(seed) for seed in (1, 2)]
    got = [t(x, generator=g) for g in gens]
    drawn = t.last_params
    replayed = t(x, params=drawn)
    plan, calls = t._plan(x), []
    fill, draw_and_fill = plan.fill, plan.draw_and_fill
    plan.fill = lambda *args: calls.append("fill") or fill(*args)
    plan.draw_and_fill = lambda *args: calls.append("draw") or draw_and_fill(*args)
    assert _same(t(x, params=drawn), replayed)
    t(x, generator=_gen(3))
    assert calls == ["fill", "draw"]  # a replay and a fresh call each take theirs
    plan.fill, plan.draw_and_fill = fill, draw_and_fill
    monkeypatch.setattr(BOX_CLASSES[name], "_fill_fns", lambda self, plan, x: (None, None))
    general = T.build(name)
    general_gens = [_gen(seed) for seed in (1, 2)]
    expected = [general(x, generator=g) for g in general_gens]
    assert general._plan(x).fill is None and general._plan(x).draw_and_fill is None
    for y, e in zip(got + [replayed], expected + [expected[1]]):
        assert _same(y, e) and y.is_contiguous(memory_format=memory_format)
    # the same draws, kept as last_params, and the generators left in the same state
    assert drawn.keys() == general.last_params.keys()
    assert all(torch.equal(drawn[k], general.last_params[k]) for k in drawn)
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(gens, general_gens))
    torch.testing.assert_close(got[1], reference_box_transform(name, x, drawn), rtol=0, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", BOX)
def test_box_transforms_that_replace_sample_or_apply_keep_them(name):
    """A subclass (or an instance) that replaces sample or apply is called through them, not
    through the plan's draw-and-fill."""
    base = BOX_CLASSES[name]

    class TopLeft(base):
        def sample(self, x, generator, *, external_partner=False):
            params = super().sample(x, generator, external_partner=external_partner)
            return dict(params, start=torch.zeros_like(params["start"]))

    class Counted(base):
        calls = 0

        def apply(self, x, params, partner):
            type(self).calls += 1
            return super().apply(x, params, partner)

    x = _batch((6, 3, 12, 10))
    t = TopLeft()
    y = t(x, generator=_gen())
    assert t._plan(x).draw_and_fill is None and (t.last_params["start"] == 0).all()
    torch.testing.assert_close(y, reference_box_transform(name, x, t.last_params), rtol=0, atol=1e-6)
    c = Counted()
    y = c(x, generator=_gen())
    assert Counted.calls == 1 and c._plan(x).draw_and_fill is None
    assert torch.equal(y, T.build(name)(x, generator=_gen()))
    t, calls = T.build(name), []
    t(x, generator=_gen())  # a plan with a draw-and-fill, then the instance's apply replaced
    assert t._plan(x).draw_and_fill is not None
    t.apply = lambda *args: calls.append(1) or base.apply(t, *args)
    assert torch.equal(t(x, generator=_gen(2)), T.build(name)(x, generator=_gen(2))) and calls == [1]


NO_FILL_CASES = {  # input, and which transforms keep apply's general route for it
    "float16": (lambda: _batch((6, 3, 12, 10), torch.float16), {"cutout"}),
    "uint8": (lambda: _batch((6, 3, 12, 10), torch.uint8), {"cutout", "cutmix"}),
    "strided": (lambda: _batch((6, 3, 12, 20))[..., ::2], {"cutout"}),
    "large": (lambda: _batch((5, 3, 70, 90)), {"cutout", "cutmix"}),
    "one-image": (lambda: _batch((1, 3, 12, 10)), {"cutmix"}),
}


@pytest.mark.parametrize("case", list(NO_FILL_CASES))
@pytest.mark.parametrize("name", BOX)
def test_fill_only_where_it_applies(name, case):
    """Where a plan has no fill, apply's general route: cutout's fill is for float32/64
    contiguous or channels-last images only (its matmul mean), cutmix's for float images with
    batch partners; neither for large images."""
    make, general = NO_FILL_CASES[case]
    x, t = make(), T.build(name)
    partner = _batch(x.shape, seed=9) if name == "cutmix" and x.shape[0] == 1 else None
    y = t(x, generator=_gen(), partner=partner)
    assert (t._plan(x).fill is None) == (name in general)
    atol = 1 if x.dtype == torch.uint8 else 1e-2 if x.dtype == torch.float16 else 1e-5
    expected = reference_box_transform(name, x, t.last_params, partner)
    torch.testing.assert_close(y.double(), expected.double(), rtol=0, atol=atol)


@pytest.mark.parametrize("name", BOX)
def test_boxes_edited_in_place_after_the_draw_are_the_ones_applied(name):
    """A plan reads the indicators of its last draw by the draw's table index only while the
    drawn tensors are unchanged: boxes edited in place (or replaced) before ``apply`` are
    applied as edited."""
    t = T.build(name)
    x = _batch((6, 3, 12, 10))
    params = t.sample(x, _gen(), external_partner=False)
    start, size = params["start"], params["size"]
    start[:, 0] = 0  # every box to the top row (in place: same tensor, new version)
    size[:, 1] = size[:, 1].clamp(max=5)
    y = t(x, params=params)
    torch.testing.assert_close(y, reference_box_transform(name, x, params), rtol=0, atol=1e-6)
    params = t.sample(x, _gen(2), external_partner=False)
    replaced = dict(params, start=torch.zeros_like(params["start"]))  # new tensors: from start and size
    torch.testing.assert_close(t(x, params=replaced), reference_box_transform(name, x, replaced), rtol=0, atol=1e-6)
    # the unedited draw, replayed as it is, gives what the call that drew it gave
    y = t(x, generator=_gen(3))
    assert torch.equal(t(x, params=t.last_params), y)


@pytest.mark.parametrize("name", BOX)
def test_box_transforms_under_inference_mode(name):
    """Tensors made under ``torch.inference_mode`` keep no version counter: their boxes are
    not kept for the index lookup, and the output is the same as outside it."""
    t = T.build(name)
    x = _batch((6, 3, 12, 10))
    expected = t(x, generator=_gen())
    with torch.inference_mode():
        got = t(x, generator=_gen())
        assert t._plan(x).drawn is None
    assert torch.equal(got, expected)
    torch.testing.assert_close(got, reference_box_transform(name, x, t.last_params), rtol=0, atol=1e-6)
