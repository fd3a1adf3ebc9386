"""Where the time of cutout and cutmix goes on small images, and what else was tried there.

On the latency-bound batch of ``bench_transforms.py`` ((64, 3, 32, 32) float32) a call is a
handful of small ops; this script times, interleaved in one run and as the median over rounds of
each op's time over ``x.index_select(0, perm)``'s in the same round:

* the library calls (``t(x, generator=g)``), their parameter draws alone (``t.sample``) and
  their ``apply`` alone (parameters already drawn);
* the same ops as the library's blend path, written inline with the parameters already drawn
  (no checks, no dispatch): what the data and the ops cost by themselves;
* other ways to do the two expensive steps, the selection (``torch.where``, advanced-indexing
  gather and ``index_put_`` of the box pixels, an exact blend in integer arithmetic on the float
  bits) and the box sums (a batched matmul);

and prints a table of microseconds and ratios (no targets: this explains a row of the transform
table, it does not grade one).

A second table shows what makes a whole call in the transform benchmark cost more than its parts
timed alone:

* cold calls: the transform benchmark times each op in blocks of calls, and the op before cutout
  there is stitch (before cutmix, cutout). Here every round runs a block of the other transform,
  then times each of the next calls of the probed one on its own: the first calls after another
  op cost more than the same call repeated, and the block's mean carries that;
* minor page faults per call (memory the C allocator gave back to the system and takes again;
  how many depends on the process's heap, so it changes from one run to the next);
* the box draw's ``searchsorted`` on fresh uniforms (a new draw every call, as in the library)
  against the same uniforms searched again: its binary search branches on the data.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/probe_small_boxes.py [--repeats 31] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

try:  # page-fault counts (Unix only)
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

import torch

from nda_plugins import transforms as T
from nda_plugins.transforms import _functional as F
from nda_plugins.transforms import _sampling as S

SHAPE = (64, 3, 32, 32)


def _check_finite(t: torch.Tensor) -> None:
    if not math.isfinite(float(t.sum())):
        raise ValueError("the probe's batch must be finite")


def ops(shape=SHAPE, seed=0):
    """``({name: zero-argument callable}, agree)`` for every op this probe times, on one batch;
    ``agree`` lists ``(name, result, what it stands in for)`` for :func:`check`."""
    b, c, h, w = shape
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    cutmix, cutout = T.build("cutmix"), T.build("cutout")
    # Parameters drawn as a call draws them, keeping the draw's table index (`pick`): a call
    # reads the box indicators by it (the plan's draw_and_fill; `apply` does too for the plan's
    # last draw, see _BoxPlan.indicators). `drawn` re-marks them as that draw before each apply,
    # since the probe's own draws in between replace it.
    mix_plan, out_plan = cutmix._plan(x), cutout._plan(x)
    mix_params = cutmix.sample(x, gen, external_partner=False)
    mix_pick = mix_plan.drawn[2]
    out_params = cutout.sample(x, gen, external_partner=False)
    out_pick = out_plan.drawn[2]
    perm = torch.randperm(b, generator=gen)

    def drawn(plan, params, pick):
        plan.remember(params["start"], params["size"], pick)
        return params

    def cutmix_inline():
        _check_finite(x)
        rows, cols = mix_plan.axes_by_pick(mix_pick)
        other = x.index_select(0, mix_params["partner"])
        return torch.lerp(x, other, rows * cols, out=other)

    def cutout_inline():
        rows, cols, area = out_plan.axes_by_pick(out_pick, True)
        mask = rows * cols
        sums = torch.bmm(mask.view(b, 1, h * w), x.as_strided((b, h * w, c), (c * h * w, 1, h * w)))
        mean = sums.view(b, c, 1, 1).div_(area)
        _check_finite(mean)
        return torch.lerp(x, mean, mask)

    rows, cols = F.box_axes(x.shape, mix_params["start"], mix_params["size"], x.dtype)
    mask = rows * cols
    box = mask.bool()
    other = x.index_select(0, mix_params["partner"])
    # the box's pixels as (B, hmax, 1) row and (B, 1, wmax) column indices, the last one repeated
    # to a fixed length (a repeated index rewrites the same value)
    start, size = mix_params["start"], mix_params["size"]
    r_idx = torch.minimum(torch.arange(h), size[:, :1] - 1).add_(start[:, :1])[:, : int(size[:, 0].max())]
    c_idx = torch.minimum(torch.arange(w), size[:, 1:] - 1).add_(start[:, 1:])[:, : int(size[:, 1].max())]
    r_idx, c_idx = r_idx.unsqueeze(2), c_idx.unsqueeze(1)
    sample, partner = torch.arange(b).view(b, 1, 1), mix_params["partner"].view(b, 1, 1)
    patches = x[partner, :, r_idx, c_idx]
    target = x.clone()
    x_bits, other_bits, mask_bits = x.view(torch.int32), other.view(torch.int32), mask.to(torch.int32)

    def bit_blend():  # exact for any values: x + m * (other - x) in wrapping int32
        d = torch.sub(other_bits, x_bits)
        return torch.addcmul(x_bits, d, mask_bits, out=d).view(torch.float32)

    flat_x, flat_mask = x.view(b, c, h * w), mask.view(b, 1, h * w)
    # what the alternatives compute, for check(): (name, result, the library's or reference result)
    agree = [
        ("cutmix inline", cutmix_inline(), cutmix.apply(x, mix_params, None)),
        ("cutout inline", cutout_inline(), cutout.apply(x, out_params, None)),
        ("int32 bit blend", bit_blend(), torch.where(box, other, x)),
        ("box sums by matmul", torch.bmm(flat_mask, flat_x.transpose(1, 2)).view(b, c), (x * mask).sum(dim=(-2, -1))),
        ("gathered box pixels", patches.permute(0, 3, 1, 2),
         torch.stack([x[partner[i, 0, 0], :, r_idx[i, :, 0]][:, :, c_idx[i, 0]] for i in range(b)])),
    ]
    return {
        "index_select (baseline)": lambda: x.index_select(0, perm),
        "cutmix: call": lambda: cutmix(x, generator=gen),
        "cutmix: draw parameters": lambda: cutmix.sample(x, gen, external_partner=False),
        "cutmix: apply (parameters drawn)": lambda: cutmix.apply(x, drawn(mix_plan, mix_params, mix_pick), None),
        "cutmix: blend path inline": cutmix_inline,
        "cutout: call": lambda: cutout(x, generator=gen),
        "cutout: draw parameters": lambda: cutout.sample(x, gen, external_partner=False),
        "cutout: apply (parameters drawn)": lambda: cutout.apply(x, drawn(out_plan, out_params, out_pick), None),
        "cutout: blend path inline": cutout_inline,
        "select: lerp with the 0/1 mask": lambda: torch.lerp(x, other, mask),
        "select: torch.where": lambda: torch.where(box, other, x),
        "select: finiteness sum + lerp": lambda: (_check_finite(x), torch.lerp(x, other, mask)),
        "select: int32 bit blend": bit_blend,
        "select: gather box pixels (advanced indexing)": lambda: x[partner, :, r_idx, c_idx],
        "select: index_put_ box pixels": lambda: target.__setitem__((sample, slice(None), r_idx, c_idx), patches),
        "box sums: product + sum": lambda: (x * mask).sum(dim=(-2, -1)),
        "box sums: batched matmul (the library's)": lambda: torch.bmm(flat_mask, flat_x.transpose(1, 2)),
    }, agree


def check(shape=SHAPE) -> list[str]:
    """Names of the probe's alternatives that compute what they stand in for (all, or it raises)."""
    agree = ops(shape)[1]
    for name, got, expected in agree:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    return [name for name, _, _ in agree]


def _timer(clock):
    now = time.process_time if clock == "cpu" else time.perf_counter

    def run(fn, reps):
        t0 = now()
        for _ in range(reps):
            fn()
        return (now() - t0) / reps
    return run


def probe(repeats=31, inner=50, clock="cpu", shape=SHAPE):
    """``[(name, median µs, median ratio to index_select)]`` over ``repeats`` interleaved rounds."""
    table = ops(shape)[0]
    run = _timer(clock)
    for fn in table.values():  # warm-up
        run(fn, 2)
    samples = {k: [] for k in table}
    for _ in range(repeats):
        for k, fn in table.items():
            samples[k].append(run(fn, inner))
    base = samples["index_select (baseline)"]
    return [(k, statistics.median(v) * 1e6, statistics.median(a / b for a, b in zip(v, base)))
            for k, v in samples.items()]


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def whole_call(repeats=31, block=20, first=4, clock="cpu", shape=SHAPE):
    """``[(name, median µs, median ratio to index_select)]``: what moves a whole call (see the
    module docstring). Per probed transform: each of its ``first`` calls right after a block of
    the transform that precedes it in the benchmark, the mean over a block of ``block`` calls so
    started, and the same calls after a block of its own; the minor page faults per call; then
    the box draw's ``searchsorted`` on fresh and on repeated uniforms."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(shape[0], generator=gen)
    built = {name: T.build(name) for name in ("stitch", "cutout", "cutmix")}
    before = {"cutout": "stitch", "cutmix": "cutout"}  # the benchmark's order
    calls = {name: (lambda t=t: t(x, generator=gen)) for name, t in built.items()}

    def index_select():
        return x.index_select(0, perm)

    def block_times(fn, n):
        times = []
        for _ in range(n):
            t0 = now()
            fn()
            times.append(now() - t0)
        return times

    # the box draw's search, as the library runs it: fresh uniforms, or one set searched again
    h, w = shape[-2:]
    cutout = built["cutout"]
    cutout(x, generator=gen)  # fills the draw's cached tables
    h_lo, h_hi, w_lo, w_hi, _ = S.box_bounds(h, w, cutout.low, cutout.high)
    _, _, cdf, shift = S.box_pairs(h, w, h_lo, h_hi, w_lo, w_hi, x.device)
    fresh = [torch.rand(shape[0], 2, generator=gen).add_(shift) for _ in range(block)]

    def search_fresh():
        for u in fresh:
            torch.searchsorted(cdf, u, right=True)

    def search_same():
        for _ in fresh:
            torch.searchsorted(cdf, fresh[0], right=True)

    samples: dict[str, list[float]] = {}

    def add(key, value):
        samples.setdefault(key, []).append(value)

    for fn in list(calls.values()) + [index_select]:  # warm-up
        block_times(fn, 2)
    for _ in range(repeats):
        base = statistics.median(block_times(index_select, block))
        add("index_select (baseline)", base)
        for name, other in before.items():
            for after, label in ((other, f"after {other}"), (name, "after itself")):
                block_times(calls[after], block)
                faults = _faults()
                times = block_times(calls[name], block)
                faults = (_faults() - faults) / block
                for i in range(first):
                    add(f"{name}: call {i + 1} {label}", times[i])
                add(f"{name}: mean of {block} calls {label}", sum(times) / block)
                add(f"{name}: minor page faults per call {label}", faults)
        for label, fn in (("fresh uniforms", search_fresh), ("the same uniforms again", search_same)):
            t0 = now()
            fn()
            add(f"box draw searchsorted: {label}", (now() - t0) / block)
    base = samples["index_select (baseline)"]
    rows = []
    for k, v in samples.items():
        if "page faults" in k:  # a count, not a time
            rows.append((k, statistics.median(v), None))
        else:
            rows.append((k, statistics.median(v) * 1e6, statistics.median(a / b for a, b in zip(v, base))))
    return rows


def _print(rows, unit="µs"):
    width = max(len(name) for name, _, _ in rows)
    print(f"{'op':{width}s}  {unit:>7s}  {'x index_select':>14s}")
    for name, value, ratio in rows:
        if ratio is None:
            print(f"{name:{width}s}  {value:7.2f}  {'(count)':>14s}")
        else:
            print(f"{name:{width}s}  {value:7.1f}  {ratio:14.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--inner", type=int, default=50, help="calls per timed sample")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {SHAPE} float32 on cpu, {args.clock} clock")
    rows = probe(args.repeats, args.inner, args.clock)
    _print(rows)
    print("\nwhole calls: cold calls after another transform, page faults, the draw's search")
    calls = whole_call(args.repeats, clock=args.clock)
    _print(calls)
    return rows, calls


if __name__ == "__main__":
    main()
