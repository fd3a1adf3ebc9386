"""benchmarks/bench_step.py runs end to end in a tiny mode and produces its table and JSON (no timing asserts);
the stylegan2_ada step case builds steps that train D with the adapter's NDA loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_step.py", "bench_step")


@pytest.fixture(scope="module")
def sg2(load_benchmark):
    return load_benchmark("step_cases/stylegan2_ada.py", "step_case_stylegan2_ada")


def _case(name, build):
    """A minimal step case for bench_step: never skipped, one ``weighted`` variant, ``build`` given."""
    return type(name, (), {"NAME": "broken", "VARIANTS": ("weighted",),
                           "skip_reason": staticmethod(lambda: None), "build": staticmethod(build)})


def test_discovers_every_case_file(bench):
    cases = bench.discover()
    files = {p.stem for p in (BENCH / "step_cases").glob("*.py") if not p.name.startswith("_")}
    assert set(cases) == files
    assert {"pix2pix", "stylegan2_ada", "biggan", "mmengine_dpc"} <= set(cases)


def test_targets(bench):
    assert bench.target_for("replace", 0.4) == pytest.approx(1.05)
    assert bench.target_for("weighted", 0.4) == pytest.approx(1.45)
    with pytest.raises(ValueError, match="mode must be"):
        bench.target_for("anda", 0.4)


def test_tiny_run_writes_table_and_json(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NDA_UPSTREAM_BIGGAN", raising=False)
    monkeypatch.delenv("NDA_UPSTREAM_PIX2PIX", raising=False)
    monkeypatch.delenv("NDA_UPSTREAM_STYLEGAN2_ADA", raising=False)
    out = tmp_path / "step.json"
    assert bench.main(["--device", "cpu", "--cases", "pix2pix,stylegan2_ada,biggan", "--repeats", "1",
                       "--warmup", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["case"], r["variant"]) for r in rows] == [
        ("biggan", "-"), ("pix2pix", "weighted"), ("pix2pix", "replace"),
        ("stylegan2_ada", "weighted"), ("stylegan2_ada", "replace"), ("stylegan2_ada", "anda")]
    skipped = rows[0]
    assert skipped["status"] == "skipped" and "NDA_UPSTREAM_BIGGAN" in skipped["reason"]
    for r in rows[1:]:
        assert r["status"] in ("pass", "miss") and r["plain_ms"] > 0 and r["nda_ms"] > 0 and r["ratio"] > 0
        assert 0 < r["share"] and r["fake_d_pass_ms"] > 0
        expected = 1.05 if r["mode"] == "replace" else 1 + r["share"] + 0.05
        assert r["target"] == pytest.approx(expected)
        assert r["status"] == ("pass" if r["ratio"] <= r["target"] else "miss")
    assert rows[-1]["mode"] == "weighted" and "no upstream" in rows[-1]["source"]
    assert result["device"] == "cpu" and result["repeats"] == 1

    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + len(rows)  # header, rule, one line per row
    assert "skipped: NDA_UPSTREAM_BIGGAN is not set" in printed and f"wrote {out}" in printed


def test_bad_arguments_name_the_flag(bench, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--cases", "nope", "--out", str(tmp_path / "x.json")])
    assert "--cases: unknown case(s) ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "--repeats must be >= 1, got 0" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.main(["--device", "cuda", "--out", str(tmp_path / "x.json")])
        assert "--device cuda was given" in capsys.readouterr().err


def test_case_without_fake_pass_is_refused(bench):
    Case = _case("Case", lambda variant, device, seed=0: {"step": lambda: None})

    with pytest.raises(TypeError, match="fake_d_pass"):
        bench.bench_case(Case, torch.device("cpu"), repeats=1, warmup=0)


# -- the stylegan2_ada case (stand-in, no upstream) --------------------------------------------
def test_sg2_interface(sg2, monkeypatch):
    monkeypatch.delenv("NDA_UPSTREAM_STYLEGAN2_ADA", raising=False)
    assert sg2.NAME == "stylegan2_ada" and sg2.VARIANTS == ("weighted", "replace", "anda")
    assert sg2.skip_reason() is None and "no upstream" in sg2.source()
    with pytest.raises(ValueError, match="variant"):
        sg2.build("jigsaw", torch.device("cpu"))
    monkeypatch.setenv("NDA_UPSTREAM_STYLEGAN2_ADA", "/nonexistent")
    assert "has no training/loss.py" in sg2.skip_reason()


@pytest.mark.parametrize("variant", [None, "weighted", "replace", "anda"])
def test_sg2_step_trains_d_with_the_adapter_loss(sg2, variant, monkeypatch):
    monkeypatch.delenv("NDA_UPSTREAM_STYLEGAN2_ADA", raising=False)
    from nda_plugins.adapters.stylegan2_ada.mixin import NDALossMixin

    built = sg2.build(variant, torch.device("cpu"))
    loss, D = built["loss"], built["D"]
    assert isinstance(loss, NDALossMixin) == (variant is not None)
    before = [p.detach().clone() for p in D.parameters()]
    built["step"]()
    built["step"]()
    assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters()))
    assert all(p.grad is None for p in loss.G_synthesis.parameters())  # G frozen in a D phase
    if variant is None:
        assert "fake_d_pass" in built
        built["fake_d_pass"]()
        assert loss.stats["Loss/signs/fake"][0] == 2 * sg2.BATCH  # two steps' worth of reported fakes
    else:
        assert loss.nda.num_advances == 2 and loss.nda.mode == sg2.VARIANT_MODES[variant]
        assert "NDA/weight" in loss.stats
        assert ("NDA/scores/neg" in loss.stats) == (loss.nda.mode == "weighted")
        assert ("NDA/replaced" in loss.stats) == (loss.nda.mode == "replace")
        assert (loss.nda.alpha is not None) == (variant == "anda")


def test_profile_step_diffs_ops_and_attributes_time(monkeypatch, capsys, load_benchmark):
    monkeypatch.delenv("NDA_UPSTREAM_STYLEGAN2_ADA", raising=False)
    monkeypatch.syspath_prepend(str(BENCH))
    prof = load_benchmark("profile_step.py", "profile_step")
    assert prof.main(["stylegan2_ada", "replace", "--steps", "1", "--rows", "5", "--attribute"]) == 0
    out = capsys.readouterr().out
    assert "calls plain" in out and "total self CPU time" in out
    assert "session.negatives" in out and "losses.replace_fakes" in out and "whole step" in out
    rows = prof.op_diff(prof.discover()["stylegan2_ada"], "replace", torch.device("cpu"), 1)
    ops = {r[0]: r for r in rows}
    assert ops["aten::where"][1] == 0 and ops["aten::where"][2] > 0  # the replace selection, NDA only
    with pytest.raises(SystemExit):
        prof.main(["pix2pix", "anda"])
    assert "variant: expected one of" in capsys.readouterr().err
    monkeypatch.delenv("NDA_UPSTREAM_PIX2PIX", raising=False)
    assert prof.main(["pix2pix", "replace", "--steps", "1", "--rows", "1", "--attribute"]) == 2
    assert "no in-step attribution" in capsys.readouterr().err  # one line, no traceback


def test_a_failing_case_gets_an_error_row_and_exit_1(bench, tmp_path, monkeypatch, capsys):
    def build(variant, device, seed=0):
        raise RuntimeError("upstream import failed | here")

    Broken = _case("Broken", build)

    real = bench.discover()
    monkeypatch.setattr(bench, "discover", lambda: {"broken": Broken, "pix2pix": real["pix2pix"]})
    out = tmp_path / "s.json"
    assert bench.main(["--repeats", "1", "--warmup", "0", "--out", str(out)]) == 1
    rows = json.loads(out.read_text())["rows"]
    assert rows[0] == {"case": "broken", "variant": "-", "source": "", "status": "error",
                       "reason": "RuntimeError: upstream import failed | here"}
    assert [r["status"] in ("pass", "miss") for r in rows[1:]] == [True, True]  # the other case still ran
    printed = capsys.readouterr()
    assert "| broken | – | – | – | – | – | – | error: RuntimeError: upstream import failed / here | – |" in printed.out
    assert "error in case(s) ['broken']" in printed.err
