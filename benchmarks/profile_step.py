"""Where the extra time of an NDA step goes: torch.profiler on one bench_step case, plain against NDA.

Builds the plain step and the NDA step of a case from ``benchmarks/step_cases/`` (as
``bench_step.py`` does), profiles ``--steps`` calls of each with ``torch.profiler`` and prints,
per op, the calls and self CPU time per step in both, sorted by the difference. With
``--attribute`` (cases whose build returns ``"loss"`` with an ``nda`` session, e.g.
``stylegan2_ada``) it also times, inside the running NDA step, the session's calls and the
loss helpers the adapter uses (wall time per step, without the profiler).

Usage::

    python benchmarks/profile_step.py CASE VARIANT [--device cpu] [--steps 20] [--rows 30] [--attribute]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from bench_step import discover  # benchmarks/ is on sys.path when this file runs as a script


def _profile(step, steps: int, device: torch.device) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for _ in range(3):
        step()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    return {e.key: (e.count / steps, e.self_cpu_time_total / steps) for e in prof.key_averages()}


def op_diff(case, variant: str, device: torch.device, steps: int) -> list[tuple]:
    """``[(op, calls plain, calls nda, self us plain, self us nda)]`` sorted by the self-time difference."""
    plain = _profile(case.build(None, device, 0)["step"], steps, device)
    nda = _profile(case.build(variant, device, 0)["step"], steps, device)
    rows = [(k, *plain.get(k, (0, 0))[:1], *nda.get(k, (0, 0))[:1], plain.get(k, (0, 0))[1], nda.get(k, (0, 0))[1])
            for k in set(plain) | set(nda)]
    rows.sort(key=lambda r: r[4] - r[3], reverse=True)
    return rows


def attribute(case, variant: str, device: torch.device, steps: int) -> dict[str, float]:
    """Milliseconds per step spent in the session's calls and the adapter's loss helpers."""
    built = case.build(variant, device, 0)
    loss = built.get("loss")
    if loss is None or getattr(loss, "nda", None) is None:
        raise ValueError(f"--attribute: case {case.NAME!r} does not return a 'loss' with an NDA session")
    from nda_plugins import losses

    spent: dict[str, float] = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(owner, name, label):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            sync()
            start = time.perf_counter()
            out = original(*args, **kwargs)
            sync()
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start
            return out

        setattr(owner, name, wrapper)

    for name in ("negatives", "weight", "report", "observe", "advance"):
        timed(loss.nda, name, f"session.{name}")
    for name in ("replace_fakes", "select_replaced", "fake_side_loss", "real_loss"):
        timed(losses, name, f"losses.{name}")
    for name in ("run_D", "run_G", "_report"):
        timed(loss, name, f"loss.{name}")
    for _ in range(3):
        built["step"]()
    spent.clear()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        built["step"]()
    sync()
    spent["whole step"] = time.perf_counter() - start
    return {k: v / steps * 1e3 for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case")
    parser.add_argument("variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--attribute", action="store_true")
    args = parser.parse_args(argv)
    cases = discover()
    if args.case not in cases:
        parser.error(f"case: expected one of {sorted(cases)}, got {args.case!r}")
    case = cases[args.case]
    if args.variant not in case.VARIANTS:
        parser.error(f"variant: expected one of {list(case.VARIANTS)} for {args.case}, got {args.variant!r}")
    reason = case.skip_reason()
    if reason:
        parser.error(f"case {args.case} cannot run here: {reason}")
    device = torch.device(args.device)
    print(f"{args.case} / {args.variant} on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps each; per step:")
    print(f"{'op':60} {'calls plain':>11} {'calls NDA':>9} {'self us plain':>13} {'self us NDA':>11}")
    rows = op_diff(case, args.variant, device, args.steps)
    for op, n_plain, n_nda, us_plain, us_nda in rows[: args.rows]:
        print(f"{op[:60]:60} {n_plain:11.1f} {n_nda:9.1f} {us_plain:13.0f} {us_nda:11.0f}")
    print(f"{'total self CPU time':60} {'':11} {'':9} {sum(r[3] for r in rows):13.0f} {sum(r[4] for r in rows):11.0f}")
    if args.attribute:
        try:
            parts = attribute(case, args.variant, device, args.steps)
        except ValueError as exc:  # a case without an NDA session in its loss
            print(f"\nno in-step attribution: {exc}", file=sys.stderr)
            return 2
        print("\ninside the running NDA step (ms per step, wall time):")
        for label, ms in parts.items():
            print(f"  {label:24} {ms:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
