"""benchmarks/probe_small_boxes.py: its inline and alternative ops compute what they stand in for,
and it runs end to end (no timing asserts)."""

from __future__ import annotations

import pytest


@pytest.fixture
def probe(load_benchmark):
    return load_benchmark("probe_small_boxes.py", "probe_small_boxes")


def test_alternatives_compute_the_same_thing(probe):
    assert probe.check() == ["cutmix inline", "cutout inline", "int32 bit blend", "box sums by matmul",
                             "gathered box pixels"]
    assert probe.check((8, 3, 12, 10))


def test_runs_and_reports_every_op(probe, capsys):
    rows, calls = probe.main(["--repeats", "1", "--inner", "1", "--clock", "wall"])
    names = [name for name, _, _ in rows]
    assert names[0] == "index_select (baseline)" and len(names) == len(set(names)) == 17
    assert all(micros > 0 and ratio > 0 for _, micros, ratio in rows)
    out = capsys.readouterr().out
    assert "cutout: blend path inline" in out and "cutout: call 1 after stitch" in out
    # the whole-call table: per transform, 4 single calls, a block mean and a fault count, after
    # the benchmark's previous transform and after itself; then the search on fresh and repeated draws
    names = [name for name, _, _ in calls]
    assert len(names) == len(set(names)) == 1 + 2 * 2 * 6 + 2
    assert names[0] == "index_select (baseline)" and names[-2:] == [
        "box draw searchsorted: fresh uniforms", "box draw searchsorted: the same uniforms again"]
    assert "cutmix: call 1 after cutout" in names and "cutmix: mean of 20 calls after itself" in names
    for name, value, ratio in calls:
        if "page faults" in name:
            assert ratio is None and value >= 0
        else:
            assert value > 0 and ratio > 0
