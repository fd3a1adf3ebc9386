"""CUDA behaviour of the transforms and of a session's per-step path (skipped without CUDA).

Run by ``benchmarks/gpu_check.sh`` on a CUDA machine:

* every registered transform on CUDA in float32 / float16 / bfloat16, contiguous and
  channels-last: shape, dtype, device and memory format kept, the input untouched, no negative
  equal to its source, reproducible from a generator on the device;
* the hot path (a transform call, ``NDASession.negatives``, the losses, ``replace_fakes``,
  InfoNCE with NDA negatives, NAT, ANDA's ``observe``/``advance`` between updates) makes no host sync, checked with
  ``torch.cuda.set_sync_debug_mode("error")`` after one warm-up call (the first call on a device
  fills small per-device lookup tables, a one-off host-to-device copy);
* ``compile()`` with Triton (inductor on CUDA) gives the eager result from the same generator state.

``NDA_TEST_DEVICE=cpu`` runs the same tests on the CPU, where there is no host sync to catch and
``compile()`` uses inductor's C++ backend: that checks this file's own logic where there is no GPU
(``gpu_check.sh``'s dry run does it, and ``tests/test_gpu_check.py`` runs that dry run).
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest
import torch

from nda_plugins import NDASession, losses
from nda_plugins import transforms as T

#: the device under test: CUDA unless NDA_TEST_DEVICE says otherwise (see the module docstring)
DEV = os.environ.get("NDA_TEST_DEVICE", "cuda")
if DEV not in ("cuda", "cpu"):
    raise ValueError(f"NDA_TEST_DEVICE must be 'cuda' or 'cpu', got {DEV!r}")
ON_CUDA = DEV == "cuda"

pytestmark = pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs CUDA (run benchmarks/gpu_check.sh)")

NAMES = T.available()
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
BUILTINS = ["jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise"]


def _sync():
    if ON_CUDA:
        torch.cuda.synchronize()


def _gen(seed=0):
    return torch.Generator(device=DEV).manual_seed(seed)


def _batch(dtype=torch.float32, fmt="contiguous", shape=(8, 3, 32, 32)):
    g = torch.Generator(device=DEV).manual_seed(123)
    x = torch.rand(shape, device=DEV, generator=g).to(dtype)
    return x.contiguous(memory_format=FORMATS[fmt]) if x.dim() == 4 else x


def _make(name, x):
    return T.build(name, **T.example_options(name, x))


@contextlib.contextmanager
def no_host_sync():
    """Any synchronising CUDA call inside the block raises (``set_sync_debug_mode("error")``); on
    the CPU there is no device to wait for, and the block just runs."""
    if not ON_CUDA:
        yield
        return
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(NAMES)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_every_transform_on_cuda(name, dtype, fmt):
    x = _batch(dtype, fmt)
    before = x.clone()
    t = _make(name, x)
    y = t(x, generator=_gen())
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert y.is_contiguous(memory_format=FORMATS[fmt]), f"{name}: memory format not kept"
    assert y.data_ptr() != x.data_ptr() and torch.equal(x, before), f"{name}: input changed"
    assert torch.isfinite(y.float()).all()
    if getattr(t, "distinct_from_source", True):
        assert (y != x).flatten(1).any(1).all(), f"{name}: a negative equals its source"
    assert torch.equal(t(x, generator=_gen()), y), f"{name}: not reproducible from the CUDA generator"
    for value in (t.last_params or {}).values():
        if isinstance(value, torch.Tensor) and value.numel() > 0:
            assert value.device.type == DEV, f"{name}: parameters sampled off the device"


@pytest.mark.parametrize("name", NAMES)
def test_video_on_cuda(name):
    x = _batch(torch.float32, shape=(4, 3, 4, 16, 16))
    y = _make(name, x)(x, generator=_gen())
    assert y.shape == x.shape and y.device == x.device


def test_generators_live_on_the_device():
    x = _batch()
    if ON_CUDA:  # a CPU generator for a CUDA batch (on the CPU there is no other device to mix up)
        with pytest.raises(ValueError, match="generator must live on the input's device type"):
            T.build("jigsaw")(x, generator=torch.Generator().manual_seed(0))
    session = NDASession(transform="jigsaw", weight=0.5, seed=3)
    neg, _ = session.negatives(x, step=0)
    assert session.generator.device.type == DEV and neg.device == x.device
    again, _ = NDASession(transform="jigsaw", weight=0.5, seed=3).negatives(x, step=0)
    assert torch.equal(neg, again)
    if ON_CUDA:
        with pytest.raises(ValueError, match="use one session per device type"):
            session.negatives(x.cpu(), step=1)


def test_session_resumes_from_a_checkpoint_loaded_onto_the_device(tmp_path):
    """``torch.load(map_location=DEV)`` puts the saved generator state on the device; a resumed
    session must still take it (``Generator.set_state`` wants a CPU tensor) and continue exactly."""
    x = _batch()
    session = NDASession(transform="cutout", weight=0.5, seed=5)
    session.negatives(x, step=0)
    torch.save(session.state_dict(), tmp_path / "s.pt")
    expected, _ = session.negatives(x, step=1)
    state = torch.load(tmp_path / "s.pt", map_location=DEV, weights_only=False)
    resumed = NDASession(transform="cutout", weight=0.5, seed=99)
    resumed.load_state_dict(state)
    got, _ = resumed.negatives(x, step=1)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", NAMES)
def test_transform_hot_path_has_no_host_sync(name):
    x = _batch()
    t = _make(name, x)
    g = _gen()
    t(x, generator=g)  # warm-up: per-device lookup tables
    with no_host_sync():
        y = t(x, generator=g)
    _sync()
    assert y.shape == x.shape


@pytest.mark.parametrize("mode", ["weighted", "replace"])
def test_session_step_has_no_host_sync(mode):
    x = _batch(shape=(16, 3, 32, 32))
    labels = torch.arange(16, device=DEV) % 10
    fake = torch.rand_like(x)
    session = NDASession(transform="jigsaw", weight=0.5, mode=mode, anda=True, anda_interval=8, batch_size=16, seed=0)
    session.negatives(x, labels, step=0)  # warm-up
    session.observe(0, real_logits=torch.randn(16, 1, device=DEV))
    session.advance()
    with no_host_sync():
        for step in range(1, 5):  # advances 2..5 of 8: no ANDA update (that one syncs, by design)
            w = session.weight(step)
            neg, neg_labels = session.negatives(x, labels, step=step)
            if mode == "replace":
                mixed, replaced = losses.replace_fakes(fake, neg, nda_weight=w, generator=session.generator_for(x.device))
                losses.select_replaced(replaced, labels, neg_labels)
                out = losses.fake_side_loss(mixed.mean((1, 2, 3)), nda_weight=0.0, kind="logistic")
            else:
                out = losses.fake_side_loss(fake.mean((1, 2, 3)), neg.mean((1, 2, 3)), nda_weight=w, kind="logistic")
            session.observe(step, real_logits=torch.randn(16, 1, device=DEV))
            session.advance()
    _sync()
    assert torch.isfinite(out).all()


def test_loss_hot_path_has_no_host_sync():
    """The losses, ``replace_fakes``, InfoNCE with NDA negatives, NAT and ANDA's alpha between
    updates, after one warm-up pass."""
    from nda_plugins.contrastive import nda_info_nce
    from nda_plugins.nat import nat_loss
    from nda_plugins.schedules import AdaptiveAlpha

    real, fake, neg = (torch.randn(8, 1, device=DEV) for _ in range(3))
    emb = [torch.randn(shape, device=DEV) for shape in ((8, 4), (8, 4), (8, 2, 4))]
    logits, labels = torch.randn(8, 3, device=DEV), torch.zeros(8, dtype=torch.long, device=DEV)
    is_negative = torch.zeros(8, dtype=torch.bool, device=DEV)
    gen = _gen()
    alpha = AdaptiveAlpha(batch_size=8, interval=8)

    def step():
        for kind in losses.KINDS:
            losses.discriminator_loss(real, fake, neg, nda_weight=0.5, kind=kind)
            losses.generator_loss(fake, kind=kind)
        mixed, replaced = losses.replace_fakes(fake, neg, nda_weight=0.5, generator=gen)
        losses.select_replaced(replaced, fake, neg)
        info = nda_info_nce(emb[0], emb[1], None, emb[2], temperature=0.1, nda_weight=0.5)
        nat = nat_loss(logits, labels, negative_mask=is_negative)
        alpha.observe(real)
        alpha.step()
        return mixed, info, nat

    step()  # warm-up: per-device lookup tables
    with no_host_sync():
        for _ in range(3):  # steps 2-4 of 8: no alpha update (that one syncs, by design)
            mixed, info, nat = step()
    _sync()
    assert mixed.shape == fake.shape and torch.isfinite(info).all() and torch.isfinite(nat).all()


@pytest.mark.parametrize("name", BUILTINS)
def test_compile_with_triton_matches_eager(name):
    if ON_CUDA:
        pytest.importorskip("triton")
    elif not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("torch.compile on CPU needs a C compiler")
    x = _batch(shape=(16, 3, 64, 64))
    eager = _make(name, x)(x, generator=_gen(7))
    compiled_t = _make(name, x).compile()
    got = compiled_t(x, generator=_gen(7))
    assert compiled_t._compiled_apply is not None
    if name in ("jigsaw", "stitch"):  # pure data movement: bit for bit
        assert torch.equal(got, eager)
    else:
        torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
    assert torch.equal(compiled_t(x, generator=_gen(7)), got)
