"""Throughput of the negative transforms, as ratios taken in one run.

For each shape and device it times, interleaved and repeated:

* the baselines ``x.clone()``, ``x.index_select(0, perm)`` and ``torch.randn_like(x)`` of the
  same batch;
* every nda-plugins transform;
* the obvious per-sample Python loop for the same op (defined below);
* kornia's equivalent op where it has one (RandomJigsaw, RandomCutMixV2, RandomMixUpV2), if
  kornia is installed (not RandomErasing for cutout: it fills a constant, less work than a
  mean; cutout is compared with the per-sample loop of the same work);
* with ``--compiled``, every transform again after ``t.compile()`` (its deterministic half
  through ``torch.compile``; compiling takes a few seconds per transform and shape), in rounds
  of their own after the others, with the clone their column is taken against (so the other
  figures are the same with or without ``--compiled``). Where
  compiling fails (a C++ compiler or inductor that cannot build a kernel on this machine), that
  transform's compiled column reads "compile failed", the error is printed and kept in the JSON
  (``compile_error``), and the rest of the run goes on.

and prints a table plus a JSON file. Figures are ratios, never absolute speed claims; each is
the median over rounds of the ratio of two times taken in the same round (so a change in the
machine's load during the run moves both), and the JSON also keeps each op's median time:

* ``vs clone``   = time(clone) / time(op)          (throughput relative to a copy; higher is better)
* ``x index_sel`` = time(op) / time(index_select)   (latency relative to a gather; lower is better)
* ``loop/ours``, ``kornia/ours`` = how many times slower the alternative is;
* ``compiled vs clone`` = time(clone) / time(compiled op);
* ``target``: each transform's target and whether this run met it (``TARGETS`` below): on the
  memory-bound batch, throughput >= 0.5 of a clone; on the latency-bound batch, time <= 6x an
  ``index_select``; noise, which is bound by the random number generator, is held to >= 0.8 of
  the throughput of ``torch.randn_like`` on both.

``--clock cpu`` times with the process's CPU time instead of the wall clock: on a machine shared
with other jobs the wall clock also counts time spent waiting for a core.

Usage::

    python benchmarks/bench_transforms.py [--device cpu|cuda] [--repeats 31] [--out results.json]
                                          [--compiled] [--markdown] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from nda_plugins import transforms as T

SHAPES = {"memory-bound": (32, 3, 256, 256), "latency-bound": (64, 3, 32, 32)}
OURS = ["jigsaw", "stitch", "cutout", "cutmix", "mixup", "noise"]


# -- the obvious per-sample implementations ------------------------------------------------------
def loop_jigsaw(x, grid=2):
    out = torch.empty_like(x)
    h, w = x.shape[-2] // grid, x.shape[-1] // grid
    for i in range(x.shape[0]):
        perm = torch.randperm(grid * grid)
        while bool((perm == torch.arange(grid * grid)).all()):
            perm = torch.randperm(grid * grid)
        cells = [x[i, :, r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(grid) for c in range(grid)]
        rows = [torch.cat([cells[int(perm[r * grid + c])] for c in range(grid)], dim=-1) for r in range(grid)]
        out[i] = torch.cat(rows, dim=-2)
    return out


def _other(i, n):
    j = int(torch.randint(0, n - 1, ()))
    return j + 1 if j >= i else j


def loop_stitch(x):
    out = x.clone()
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        j = _other(i, x.shape[0])
        if bool(torch.rand(()) < 0.5):
            out[i, :, :, w // 2:] = x[j, :, :, w // 2:]
        else:
            out[i, :, h // 2:] = x[j, :, h // 2:]
    return out


def _box(h, w):
    bh = int(torch.randint(h // 3, h // 2 + 1, ()))
    bw = int(torch.randint(w // 3, w // 2 + 1, ()))
    t = int(torch.randint(0, h - bh + 1, ()))
    l = int(torch.randint(0, w - bw + 1, ()))
    return t, l, bh, bw


def loop_cutout(x):
    out = x.clone()
    for i in range(x.shape[0]):
        t, l, bh, bw = _box(*x.shape[-2:])
        patch = out[i, :, t:t + bh, l:l + bw]
        patch[:] = patch.mean(dim=(-2, -1), keepdim=True)
    return out


def loop_cutmix(x):
    out = x.clone()
    for i in range(x.shape[0]):
        t, l, bh, bw = _box(*x.shape[-2:])
        out[i, :, t:t + bh, l:l + bw] = x[_other(i, x.shape[0]), :, t:t + bh, l:l + bw]
    return out


def loop_mixup(x):
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        g = float(torch.distributions.Beta(2.0, 2.0).sample())
        out[i] = g * x[i] + (1 - g) * x[_other(i, x.shape[0])]
    return out


def loop_noise(x):
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = x[i] + 0.5 * torch.randn_like(x[i])
    return out


LOOPS = {"jigsaw": loop_jigsaw, "stitch": loop_stitch, "cutout": loop_cutout,
         "cutmix": loop_cutmix, "mixup": loop_mixup, "noise": loop_noise}


def kornia_ops():
    try:
        import kornia.augmentation as K
    except Exception:  # kornia is optional: pip install nda-plugins[bench]
        return {}
    return {
        "jigsaw": K.RandomJigsaw(grid=(2, 2), p=1.0),
        "cutmix": K.RandomCutMixV2(p=1.0),
        "mixup": K.RandomMixUpV2(p=1.0),
    }


def target(case: str, name: str, row: dict) -> tuple[str, bool]:
    """The target a transform is held to on a case, and whether ``row`` meets it."""
    if name == "noise":  # bound by the random number generator on every batch
        return "vs randn_like >= 0.8", row["vs_randn_like"] >= 0.8
    if case == "latency-bound":
        return "x index_sel <= 6", row["x_index_select"] <= 6.0
    return "vs clone >= 0.5", row["vs_clone"] >= 0.5


def _timer(device, clock="wall"):
    if clock == "cpu" and device.type != "cuda":
        def run(fn, reps):
            t0 = time.process_time()
            for _ in range(reps):
                fn()
            return (time.process_time() - t0) / reps
        return run
    if device.type == "cuda":
        def run(fn, reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000 / reps
    else:
        def run(fn, reps):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) / reps
    return run


def bench_shape(label, shape, device, repeats, inner, slow_inner, compiled=False, clock="wall"):
    x = torch.rand(shape, device=device)
    perm = torch.randperm(shape[0], device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    ops = {"clone": (lambda: x.clone(), inner), "index_select": (lambda: x.index_select(0, perm), inner),
           "randn_like": (lambda: torch.randn_like(x), inner)}
    for name in OURS:
        t = T.build(name)
        ops[name] = ((lambda t=t: t(x, generator=gen)), inner)
        if compiled:
            c = T.build(name).compile()
            ops[f"compiled:{name}"] = ((lambda c=c: c(x, generator=gen)), inner)
    for name, fn in LOOPS.items():
        ops[f"loop:{name}"] = ((lambda fn=fn: fn(x)), slow_inner)
    for name, mod in kornia_ops().items():
        ops[f"kornia:{name}"] = ((lambda mod=mod: mod(x)), slow_inner)

    run = _timer(device, clock)
    compile_errors = {}

    def timed(key, fn, reps, times):
        """``run(fn, reps)``; a compiled op that fails (when first compiled, or when a guard
        makes it compile again later) is dropped, with its times and its error: it costs the
        column, not the run."""
        try:
            return run(fn, reps)
        except Exception as e:
            if not key.startswith("compiled:"):
                raise
            del ops[key]
            times.pop(key, None)
            compile_errors[key.split(":", 1)[1]] = _first_line(e)
            return None

    for key, (fn, reps) in list(ops.items()):  # warm-up (and compilation)
        timed(key, fn, 1, {})

    def rounds(keys):
        """``{key: [time per round]}``, the ops timed interleaved, so that drift in the machine's
        load hits them alike."""
        times = {k: [] for k in keys}
        for _ in range(repeats):
            for key in [k for k in keys if k in ops]:
                fn, reps = ops[key]
                t = timed(key, fn, reps, times)
                if t is not None:
                    times[key].append(t)
        return {k: v for k, v in times.items() if v}

    # The compiled transforms get rounds of their own (with the clone their column is taken
    # against): timed in the same rounds, their blocks would change the caches and the heap the
    # eager ops start from, so the eager figures would depend on whether --compiled was given.
    eager = rounds([k for k in ops if not k.startswith("compiled:")])
    compiled_rounds = rounds(["clone"] + [k for k in ops if k.startswith("compiled:")]) if compiled else {}
    med = {k: statistics.median(v) for k, v in eager.items()}
    med.update({k: statistics.median(v) for k, v in compiled_rounds.items() if k != "clone"})

    def ratio(a, b):
        """Median over rounds of time(a) / time(b), both timed in the same round."""
        for times in (eager, compiled_rounds):
            if a in times and b in times:
                return statistics.median(ta / tb for ta, tb in zip(times[a], times[b]))
        return None

    rows = []
    for name in OURS:
        row = {
            "transform": name,
            "vs_clone": ratio("clone", name),
            "x_index_select": ratio(name, "index_select"),
            "loop_over_ours": ratio(f"loop:{name}", name),
            "kornia_over_ours": ratio(f"kornia:{name}", name),
            "kornia_vs_clone": ratio("clone", f"kornia:{name}"),
            "loop_vs_clone": ratio("clone", f"loop:{name}"),
            "compiled_vs_clone": ratio("clone", f"compiled:{name}"),
            "vs_randn_like": ratio("randn_like", name),
            "compile_error": compile_errors.get(name),
        }
        row["target"], row["meets_target"] = target(label, name, row)
        rows.append(row)
    return {"case": label, "shape": list(shape), "device": str(device), "clock": clock, "compiled": compiled,
            "median_seconds": med, "rows": rows}


def _first_line(error: BaseException) -> str:
    """``Type: first line of the message`` (and the next where the first ends with a colon, as
    torch's "backend='inductor' raised:" does): a compiler's error carries its whole command line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    return f"{type(error).__name__}: {text}"[:300]


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(result):
    print(f"\n{result['case']} {tuple(result['shape'])} on {result['device']}, {result.get('clock', 'wall')} clock  "
          f"(clone {result['median_seconds']['clone'] * 1e6:.0f} us, "
          f"index_select {result['median_seconds']['index_select'] * 1e6:.0f} us, "
          f"randn_like {result['median_seconds']['randn_like'] * 1e6:.0f} us)")
    print(f"{'transform':<10}{'vs clone':>10}{'x index_sel':>13}{'vs randn':>10}{'loop/ours':>11}{'kornia/ours':>13}"
          f"{'kornia vs clone':>17}{'loop vs clone':>15}{'compiled vs clone':>19}  target")
    for r in result["rows"]:
        print(f"{r['transform']:<10}{r['vs_clone']:>10.2f}{r['x_index_select']:>13.2f}{r['vs_randn_like']:>10.2f}"
              f"{r['loop_over_ours']:>11.1f}"
              f"{_fmt(r['kornia_over_ours'], '.1f'):>13}{_fmt(r['kornia_vs_clone'], '.3f'):>17}"
              f"{r['loop_vs_clone']:>15.3f}{_compiled_cell(r):>19}  "
              f"{r['target']}: {'met' if r['meets_target'] else 'MISSED'}")
    for r in result["rows"]:
        if r.get("compile_error"):
            print(f"  t.compile() failed for {r['transform']}, so its compiled column is empty: {r['compile_error']}")


def _compiled_cell(row) -> str:
    if row.get("compile_error"):
        return "compile failed"
    return _fmt(row["compiled_vs_clone"], ".2f")


KORNIA_NAMES = {"jigsaw": "RandomJigsaw", "cutmix": "RandomCutMixV2", "mixup": "RandomMixUpV2"}


def markdown(result) -> str:
    """The README's table for one case."""
    med = result["median_seconds"]
    small = result["case"] == "latency-bound"
    compiled = result.get("compiled", result["rows"][0]["compiled_vs_clone"] is not None)
    lines = [
        f"**{result['case']}** `{tuple(result['shape'])}` float32 on {result['device']} "
        f"(`x.clone()` {med['clone'] * 1e6:.0f} µs, `x.index_select(0, perm)` {med['index_select'] * 1e6:.0f} µs, "
        f"`torch.randn_like(x)` {med['randn_like'] * 1e6:.0f} µs; {result.get('clock', 'wall')} clock)",
        "",
        "| transform | throughput vs `clone`" + ("" if small else " (target ≥ 0.5, noise excepted)")
        + " | time vs `index_select`" + (" (target ≤ 6)" if small else "")
        + " | throughput vs `randn_like`" + ("" if small else " (noise: target ≥ 0.8)")
        + " | per-sample loop is × slower | kornia is × slower"
        + (" (target ≥ 10)" if small else "") + " | target met |"
        + (" `t.compile()`: throughput vs `clone` |" if compiled else ""),
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if compiled else ""),
    ]
    for r in result["rows"]:
        k = "–" if r["kornia_over_ours"] is None else f"{r['kornia_over_ours']:.1f} ({KORNIA_NAMES[r['transform']]})"
        lines.append(f"| {r['transform']} | {r['vs_clone']:.2f} | {r['x_index_select']:.1f} | {r['vs_randn_like']:.2f} "
                     f"| {r['loop_over_ours']:.1f} | {k} | {'yes' if r['meets_target'] else 'no'} |"
                     + (f" {_compiled_cell(r)} |" if compiled else ""))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--out", default="benchmarks/results.json")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown (for the README)")
    parser.add_argument("--compiled", action="store_true", help="also time every transform after t.compile()")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock, or the process's CPU time (CPU only; robust to other jobs on the machine)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    print(f"torch {meta['torch']}, {meta['threads']} threads, {meta['cuda_device'] or meta['processor']}")
    results = []
    for label, shape in SHAPES.items():
        inner = 3 if label == "memory-bound" else 20
        result = bench_shape(label, shape, device, args.repeats, inner, 1, compiled=args.compiled, clock=args.clock)
        print_table(result)
        results.append(result)
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print(f"\nwrote {args.out}")
    if args.markdown:
        for result in results:
            print("\n" + markdown(result))


if __name__ == "__main__":
    main()
