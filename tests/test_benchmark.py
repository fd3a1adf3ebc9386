"""The benchmark script runs end to end on a tiny batch and produces its table (no timing asserts)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch


@pytest.fixture
def bench(load_benchmark):
    """A fresh copy of the script per test (tests patch its functions)."""
    return load_benchmark("bench_transforms.py", "bench_transforms")


def test_bench_shape_and_markdown(tmp_path, monkeypatch, bench):
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})  # optional peer; keep the test fast
    result = bench.bench_shape("latency-bound", (4, 3, 8, 8), torch.device("cpu"), repeats=1, inner=1, slow_inner=1)
    assert [r["transform"] for r in result["rows"]] == bench.OURS
    for row in result["rows"]:
        assert row["vs_clone"] > 0 and row["x_index_select"] > 0 and row["loop_over_ours"] > 0
        assert row["vs_randn_like"] > 0 and isinstance(row["meets_target"], bool)
        assert row["kornia_over_ours"] is None and row["compiled_vs_clone"] is None
    assert "randn_like" in result["median_seconds"]
    table = bench.markdown(result)
    assert table.count("\n| ") == len(bench.OURS) + 2  # header, rule, one row each and "(target ≤ 6)" in table
    json.dumps(result)  # the JSON file must be writable


def test_targets_compare_like_work(bench):
    """noise is held to torch.randn_like, the others to a clone; small batches to index_select."""
    row = {"vs_clone": 0.1, "vs_randn_like": 0.9, "x_index_select": 7.0}
    assert bench.target("memory-bound", "noise", row) == ("vs randn_like >= 0.8", True)
    assert bench.target("memory-bound", "cutmix", row) == ("vs clone >= 0.5", False)
    assert bench.target("latency-bound", "noise", row) == ("vs randn_like >= 0.8", True)
    assert bench.target("latency-bound", "jigsaw", row) == ("x index_sel <= 6", False)
    assert "cutout" not in bench.kornia_ops()  # RandomErasing fills a constant: unlike work


def test_cpu_clock_option(monkeypatch, bench):
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})
    result = bench.bench_shape("memory-bound", (2, 3, 8, 8), torch.device("cpu"), repeats=1, inner=1, slow_inner=1, clock="cpu")
    assert result["clock"] == "cpu" and all(v >= 0 for v in result["median_seconds"].values())


def test_per_sample_loops_make_negatives(bench):
    x = torch.rand(4, 3, 8, 8)
    for name, loop in bench.LOOPS.items():
        y = loop(x)
        assert y.shape == x.shape and not torch.equal(y, x), name


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on CPU needs a C compiler")
def test_bench_compiled_column(monkeypatch, bench):
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})
    monkeypatch.setattr(bench, "OURS", ["cutmix", "mixup"])
    result = bench.bench_shape("memory-bound", (4, 3, 8, 8), torch.device("cpu"), repeats=1, inner=1, slow_inner=1, compiled=True)
    assert "compiled:cutmix" in result["median_seconds"]
    assert all(row["compiled_vs_clone"] > 0 for row in result["rows"])
    header = bench.markdown(result).splitlines()[2]
    assert header.endswith("`t.compile()`: throughput vs `clone` |")


def test_ratios_pair_the_times_of_one_round(monkeypatch, bench):
    """A ratio is the median over rounds of two times from the same round: rounds in which the
    machine runs everything 3x slower leave it unchanged, and so does one disturbed measurement
    (a ratio of medians would read 1.5 here)."""
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})
    monkeypatch.setattr(bench, "OURS", ["jigsaw"])
    monkeypatch.setattr(bench, "LOOPS", {"jigsaw": bench.LOOPS["jigsaw"]})
    base = (1.0, 1.0, 4.0, 2.0, 8.0)  # clone, index_select, randn_like, jigsaw, loop:jigsaw
    rounds = [[3 * t for t in base], list(base), [10.0] + list(base[1:])]  # slow, normal, disturbed clone
    times = [list(base)] + rounds  # one warm-up call per op, then the rounds
    calls = iter(t for row in times for t in row)

    def timer(device, clock="wall"):
        def run(fn, reps):
            fn()
            return next(calls)
        return run

    monkeypatch.setattr(bench, "_timer", timer)
    result = bench.bench_shape("memory-bound", (4, 3, 8, 8), torch.device("cpu"), repeats=3, inner=1, slow_inner=1)
    (row,) = result["rows"]
    assert row["vs_clone"] == pytest.approx(0.5) and row["x_index_select"] == pytest.approx(2.0)
    assert row["loop_over_ours"] == pytest.approx(4.0) and row["vs_randn_like"] == pytest.approx(2.0)
    assert result["median_seconds"]["clone"] == pytest.approx(3.0)


def test_a_failed_compile_costs_its_column_not_the_run(monkeypatch, bench):
    """A compiler that fails on one transform (inductor cannot build its kernel on this machine)
    empties that transform's compiled column and records why; the other columns are timed."""
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})
    monkeypatch.setattr(bench, "OURS", ["cutmix", "mixup"])
    real_build = bench.T.build

    class Broken:
        def __call__(self, x, generator=None):
            raise RuntimeError("C++ compile error\ng++ -march=native ...")

    def build(name, **kwargs):
        t = real_build(name, **kwargs)
        if name == "cutmix":
            t.compile = lambda **options: Broken()
        else:
            t.compile = lambda **options: t  # eager stands in for a working compiler here
        return t

    monkeypatch.setattr(bench.T, "build", build)
    result = bench.bench_shape("latency-bound", (4, 3, 8, 8), torch.device("cpu"), repeats=1, inner=1, slow_inner=1,
                               compiled=True)
    rows = {r["transform"]: r for r in result["rows"]}
    assert rows["cutmix"]["compiled_vs_clone"] is None
    assert rows["cutmix"]["compile_error"] == "RuntimeError: C++ compile error"
    assert rows["cutmix"]["x_index_select"] > 0  # the eager transform was still timed
    assert rows["mixup"]["compiled_vs_clone"] > 0 and rows["mixup"]["compile_error"] is None
    assert "compiled:cutmix" not in result["median_seconds"]
    table = bench.markdown(result)
    assert table.splitlines()[2].endswith("`t.compile()`: throughput vs `clone` |")
    assert "| cutmix |" in table and table.split("| cutmix |")[1].splitlines()[0].endswith(" compile failed |")
    json.dumps(result)


def test_an_eager_failure_is_not_hidden(monkeypatch, bench):
    """Only the compiled column may fail quietly: a transform that raises eagerly stops the run."""
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})
    monkeypatch.setattr(bench, "OURS", ["cutmix"])
    real_build = bench.T.build

    def broken(*args):
        raise RuntimeError("broken transform")

    def build(name, **kwargs):
        t = real_build(name, **kwargs)
        t.apply = broken
        return t

    monkeypatch.setattr(bench.T, "build", build)
    with pytest.raises(RuntimeError, match="broken transform"):
        bench.bench_shape("latency-bound", (4, 3, 8, 8), torch.device("cpu"), repeats=1, inner=1, slow_inner=1)


def test_compile_error_summary_keeps_the_reason(bench):
    wrapped = RuntimeError("backend='inductor' raised:\nCppCompileError: C++ compile error\n\nCommand:\ng++ ...")
    assert bench._first_line(wrapped) == "RuntimeError: backend='inductor' raised: CppCompileError: C++ compile error"
    assert bench._first_line(ValueError("")) == "ValueError: "


def test_compiled_transforms_are_timed_in_rounds_of_their_own(monkeypatch, bench):
    """The eager figures do not depend on --compiled: every eager round runs before the first
    compiled one (after one warm-up call of each), and the compiled column is taken against
    clones timed in the compiled rounds."""
    monkeypatch.setattr(bench, "kornia_ops", lambda: {})
    monkeypatch.setattr(bench, "LOOPS", {})
    monkeypatch.setattr(bench, "OURS", ["cutmix", "mixup"])
    calls = []

    class Logged:
        def __init__(self, kind, name):
            self.kind, self.name = kind, name

        def __call__(self, x, generator=None):
            calls.append((self.kind, self.name))
            return x.clone()

        def compile(self, **options):
            return Logged("compiled", self.name)

    monkeypatch.setattr(bench.T, "build", lambda name, **kwargs: Logged("eager", name))
    result = bench.bench_shape("latency-bound", (4, 3, 8, 8), torch.device("cpu"), repeats=3, inner=1, slow_inner=1,
                               compiled=True)
    warm_up, timed = calls[:4], calls[4:]
    assert sorted(warm_up) == sorted([(k, n) for n in ("cutmix", "mixup") for k in ("eager", "compiled")])
    assert timed == [("eager", "cutmix"), ("eager", "mixup")] * 3 + [("compiled", "cutmix"), ("compiled", "mixup")] * 3
    assert all(row["compiled_vs_clone"] > 0 and row["x_index_select"] > 0 for row in result["rows"])
    assert "compiled:cutmix" in result["median_seconds"] and result["compiled"] is True


def test_count_ops_counts_the_device_path(load_benchmark, capsys):
    count_ops = load_benchmark("count_ops.py", "count_ops")
    x = torch.rand(4, 3, 8, 8)
    ops, views = count_ops.count("noise", x)
    assert ops == ["empty_like", "normal_", "add"] and views == []
    # requires_grad takes the path other devices take: cutout fills through torch.where masks
    # there, and through an indicator blend (lerp) on the CPU path
    assert "where" in count_ops.count("cutout", x.clone().requires_grad_())[0]
    assert "lerp" in count_ops.count("cutout", x)[0]
    assert count_ops.main(["--shape", "4,3,8,8"]) == 0
    table = capsys.readouterr().out
    assert "cuda path" in table and table.count("\n| ") == len(count_ops.BUILTINS) + 2
    with pytest.raises(SystemExit):
        count_ops.main(["--shape", "4x3"])
    assert "--shape must be comma-separated integers" in capsys.readouterr().err
