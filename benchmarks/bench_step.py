"""What NDA costs one training step, per integrated upstream, as ratios taken in one run.

Every module in ``benchmarks/step_cases/`` is a case: ``NAME``, ``VARIANTS``, ``skip_reason()``
(``None`` or why the case cannot run here) and ``build(variant | None, device, seed)`` returning
``{"step": fn, ...}``; the plain build (``variant=None``) also returns ``"fake_d_pass"``: one
forward + backward of the discriminator on a batch of fakes (the work ``weighted`` adds on the
negatives). Optional: ``VARIANT_MODES`` (variant -> ``"weighted"``/``"replace"``, for the target of
a variant such as ``anda``) and ``source()`` (which implementation is measured, shown in the table).

For each case, the plain step, its fake D pass and the step of every variant are built from the
same seed and batch, warmed up, then timed in interleaved rounds (the order rotates each round).
Per round, ``ratio = time(NDA step) / time(plain step)`` and ``share = time(fake D pass) /
time(plain step)``; the table shows the medians over rounds (the JSON also has the ratio of the
median times, a second estimate: on a loaded machine the two differ by the noise of the run):

* ``share``  = the fake D pass's share of the plain step;
* target: ``replace`` <= 1.05 (no extra D pass); ``weighted`` <= 1 + share + 0.05 (one extra
  D pass on the negatives, plus 5% for making them).

A case whose ``skip_reason()`` is not ``None`` gets a ``skipped`` row with the reason; a case that
raises gets an ``error`` row (the others still run) and the exit status is 1.

Usage::

    python benchmarks/bench_step.py [--device cpu|cuda] [--cases a,b] [--repeats 21] [--warmup 3]
                                    [--out benchmarks/step_results.json]

The table is printed as Markdown (for the README).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

CASES_DIR = Path(__file__).resolve().parent / "step_cases"
REPLACE_TARGET = 1.05
WEIGHTED_SLACK = 0.05


def discover(cases_dir: Path = CASES_DIR) -> dict:
    """``{NAME: module}`` for every ``*.py`` case in ``cases_dir`` (sorted by file name)."""
    found = {}
    for path in sorted(cases_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"nda_step_case_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for attr in ("NAME", "VARIANTS", "skip_reason", "build"):
            if not hasattr(module, attr):
                raise TypeError(f"step case {path} lacks {attr!r} (see benchmarks/bench_step.py's docstring)")
        found[module.NAME] = module
    return found


def _timer(device: torch.device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn) -> float:
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    return timed


def target_for(mode: str, share: float) -> float:
    if mode == "replace":
        return REPLACE_TARGET
    if mode == "weighted":
        return 1.0 + share + WEIGHTED_SLACK
    raise ValueError(f"mode must be 'weighted' or 'replace', got {mode!r}")


def bench_case(case, device: torch.device, repeats: int, warmup: int, seed: int = 0) -> list[dict]:
    """Rows (one per variant) for one case; a single ``skipped`` row when it cannot run."""
    source = case.source() if hasattr(case, "source") else ""
    reason = case.skip_reason()
    if reason is not None:
        return [{"case": case.NAME, "variant": "-", "source": source, "status": "skipped", "reason": reason}]
    plain = case.build(None, device, seed)
    if "fake_d_pass" not in plain:
        raise TypeError(f"step case {case.NAME}: build(None, ...) must return 'fake_d_pass'")
    variants = {v: case.build(v, device, seed)["step"] for v in case.VARIANTS}
    fns = {"plain": plain["step"], "fake_d_pass": plain["fake_d_pass"], **variants}
    timed = _timer(device)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate: no fixed position bias
        for name in order:
            times[name].append(timed(fns[name]))
    plain_ms = statistics.median(times["plain"]) * 1e3
    fake_ms = statistics.median(times["fake_d_pass"]) * 1e3
    share = statistics.median(f / p for f, p in zip(times["fake_d_pass"], times["plain"]))
    modes = getattr(case, "VARIANT_MODES", {})
    rows = []
    for v in case.VARIANTS:
        ratio = statistics.median(n / p for n, p in zip(times[v], times["plain"]))
        mode = modes.get(v, v)
        target = target_for(mode, share)
        rows.append({
            "case": case.NAME, "variant": v, "mode": mode, "source": source,
            "plain_ms": plain_ms, "nda_ms": statistics.median(times[v]) * 1e3, "ratio": ratio,
            "ratio_of_medians": statistics.median(times[v]) * 1e3 / plain_ms,
            "fake_d_pass_ms": fake_ms, "share": share, "target": target,
            "status": "pass" if ratio <= target else "miss", "reason": None,
        })
    return rows


def _fmt(x, spec):
    return "–" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    out = ["| case | variant | plain step ms | NDA step ms | ratio | fake D pass share | target | result | measured on |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["status"] in ("skipped", "error"):
            reason = r["reason"].replace("|", "/").replace("\n", " ")
            out.append(f"| {r['case']} | – | – | – | – | – | – | {r['status']}: {reason} | {r['source'] or '–'} |")
            continue
        target = f"≤ {r['target']:.2f}" + (" (1 + share + 0.05)" if r["mode"] == "weighted" else "")
        out.append(f"| {r['case']} | {r['variant']} | {r['plain_ms']:.2f} | {r['nda_ms']:.2f} | {r['ratio']:.2f} "
                   f"| {r['share']:.2f} | {target} | {r['status']} | {r['source'] or '–'} |")
    return "\n".join(out)


def run(device: str, cases: list[str] | None = None, repeats: int = 21, warmup: int = 3, seed: int = 0) -> dict:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but torch.cuda.is_available() is False")
    found = discover()
    if cases:
        unknown = sorted(set(cases) - set(found))
        if unknown:
            raise ValueError(f"--cases: unknown case(s) {unknown}; known: {sorted(found)}")
    rows = []
    for name, case in found.items():
        if cases and name not in cases:
            continue
        try:
            rows.extend(bench_case(case, device, repeats, warmup, seed))
        except Exception as exc:  # one broken case must not hide the others' rows
            source = case.source() if hasattr(case, "source") else ""
            rows.append({"case": name, "variant": "-", "source": source, "status": "error",
                         "reason": f"{type(exc).__name__}: {exc}"[:300]})
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
        "repeats": repeats, "warmup": warmup, "seed": seed,
        "targets": {"replace": REPLACE_TARGET, "weighted": f"1 + share + {WEIGHTED_SLACK}"},
        "rows": rows,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/step_results.json")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] or None
    try:
        result = run(args.device, cases, args.repeats, args.warmup, args.seed)
    except ValueError as err:
        parser.error(str(err))
    print(f"device {result['device']} ({result['device_name']}), torch {result['torch']}, "
          f"{result['threads']} threads, median of {args.repeats} interleaved rounds after {args.warmup} warm-up")
    print(table(result["rows"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    errors = [r["case"] for r in result["rows"] if r["status"] == "error"]
    if errors:
        print(f"error in case(s) {errors}: see the table", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
