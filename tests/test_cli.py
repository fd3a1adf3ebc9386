"""The ``nda`` CLI (list, preview, doctor, the lazy group) and the PNG encoder/decoder."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import nda_plugins
from nda_plugins import transforms
from nda_plugins._manager import DISABLE_AUTOLOAD_ENV, set_plugin_manager
from nda_plugins._png import decode_png, encode_png, read_chunks, read_png, write_png
from nda_plugins.cli import SUBCOMMANDS, LazyGroup, main
from nda_plugins.cli.preview import make_grid, procedural_images, split_specs


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")  # only the built-ins, whatever is installed
    set_plugin_manager(None)
    yield
    set_plugin_manager(None)


@pytest.fixture(autouse=True)
def _plain_preview(monkeypatch):
    """``nda preview`` as without matplotlib: the bare pixel grid these tests check cell by cell.

    The labelled picture drawn when matplotlib is installed is tested on its own below.
    """
    from nda_plugins.demo import _output

    monkeypatch.setattr(_output, "pyplot", lambda: None)


def invoke(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def bad_flag(args, flag):
    """Run ``nda args`` and check it is a usage error naming ``flag``."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert flag in result.output, result.output
    return result.output


# ----------------------------------------------------------------------------------------
# The group
# ----------------------------------------------------------------------------------------


def test_top_level_help_lists_every_command_without_importing_them():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from nda_plugins.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "print(r.exit_code)\n"
        "print(sorted(m for m in sys.modules if m.startswith('nda_plugins.cli.')))\n"
        "print('torch' in sys.modules)\n"
        "print(r.output)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    exit_code, modules, torch_loaded, help_text = out.split("\n", 3)
    assert exit_code == "0" and modules == "[]" and torch_loaded == "False"
    for name in ("demo", "doctor", "list", "patch", "preview"):
        assert f"  {name} " in help_text


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version():
    assert invoke("--version").output.strip() == f"nda {nda_plugins.__version__}"


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "frobnicate" in result.output


def _group(lazy):
    @click.group(cls=LazyGroup, lazy_subcommands=lazy)
    def grp():
        """test group"""

    return grp


def test_missing_lazy_module_does_not_break_the_group():
    grp = _group({
        "gone": ("nda_plugins.cli.no_such_module:cmd", "A command whose module is missing."),
        "notcmd": ("nda_plugins._png:encode_png", "Not a click command."),
        "list": SUBCOMMANDS["list"],
    })
    runner = CliRunner()
    result = runner.invoke(grp, ["--help"])
    assert result.exit_code == 0 and "gone" in result.output and "A command whose module is missing." in result.output
    result = runner.invoke(grp, ["gone", "--anything"])
    assert result.exit_code == 1
    assert "'nda gone' is unavailable" in result.output and "no_such_module" in result.output
    result = runner.invoke(grp, ["gone", "--help"])
    assert result.exit_code == 0 and "unavailable" in result.output
    result = runner.invoke(grp, ["notcmd"])
    assert result.exit_code == 1 and "not a click command" in result.output
    assert runner.invoke(grp, ["list", "schedules"]).exit_code == 0  # the others still work


def test_lazy_subcommand_with_missing_optional_dependency(tmp_path, monkeypatch):
    (tmp_path / "nda_fake_cmd_mod.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    grp = _group({"fake": ("nda_fake_cmd_mod:cmd", "Fake.")})
    result = CliRunner().invoke(grp, ["fake"])
    assert result.exit_code == 1 and "a_dependency_that_is_not_installed" in result.output
    sys.modules.pop("nda_fake_cmd_mod", None)


# ----------------------------------------------------------------------------------------
# nda list
# ----------------------------------------------------------------------------------------


def test_list_json_matches_the_registries():
    data = json.loads(invoke("list", "--json").output)
    assert set(data) == {"plugins", "transforms", "schedules", "adapters", "patches"}
    assert [t["name"] for t in data["transforms"]] == transforms.available()
    assert [s["name"] for s in data["schedules"]] == nda_plugins.schedules.available()
    plugins = {p["name"]: p for p in data["plugins"]}
    policy = plugins["nda_plugins.builtin_policy"]
    assert policy["source"] == "built-in" and "nda_make_negatives" in policy["hooks"]


def test_list_text_and_sections():
    out = invoke("list", "transforms", "schedules").output
    assert out.startswith("transforms:\n") and "schedules:" in out and "plugins:" not in out
    for name in transforms.available():
        assert f"  {name} " in out
    bad_flag(["list", "gadgets"], "gadgets")


def test_list_shows_adapters_and_patch_series(tmp_path, monkeypatch):
    import nda_plugins.adapters
    import nda_plugins.patches

    pkg = tmp_path / "fake_upstream"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (tmp_path / "not_a_package").mkdir()
    monkeypatch.setattr(nda_plugins.adapters, "__path__", [*nda_plugins.adapters.__path__, str(tmp_path)])
    series = tmp_path / "series-dir"
    series.mkdir()
    for name in ("0001-add-flags.patch", "0002-call-sites.patch"):
        (series / name).write_text("")
    monkeypatch.setattr(nda_plugins.patches, "series_dirs", lambda: {"fake-upstream": series})
    data = json.loads(invoke("list", "adapters", "patches", "--json").output)
    assert "fake_upstream" in [a["name"] for a in data["adapters"]]
    assert "not_a_package" not in [a["name"] for a in data["adapters"]]
    assert data["patches"] == [{"name": "fake-upstream", "path": str(series), "patches": 2}]
    assert "fake-upstream" in invoke("list", "patches").output


# ----------------------------------------------------------------------------------------
# PNG
# ----------------------------------------------------------------------------------------


def inflate_png(data: bytes) -> torch.Tensor:
    """An independent reader for what our encoder writes (filter 0 rows): zlib + struct only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        chunks.setdefault(kind, []).append(payload)
        pos += 12 + length
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[color]
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()  # filter type "none" on every row
    assert list(chunks) == [b"IHDR", *([b"tEXt"] if b"tEXt" in chunks else []), b"IDAT", b"IEND"]
    return rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (3, 4, 2), (6, 2, 3), (1, 9, 4)])
def test_png_encoder_roundtrip(shape):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    data = encode_png(pixels, text={"Columns": "a, b"})
    expected = pixels if pixels.dim() == 3 else pixels[..., None]
    assert torch.equal(inflate_png(data), expected)
    assert torch.equal(decode_png(data), expected)
    texts = [p for k, p in read_chunks(data) if k == b"tEXt"]
    assert texts == [b"Columns\0a, b"]


@pytest.mark.parametrize(
    "pixels, error, word",
    [
        (torch.zeros(4, 4), TypeError, "uint8"),
        ([[0]], TypeError, "Tensor"),
        (torch.zeros(4, 4, 5, dtype=torch.uint8), ValueError, "C in 1..4"),
        (torch.zeros(2, 4, 4, 3, dtype=torch.uint8), ValueError, "shape"),
        (torch.zeros(0, 4, 3, dtype=torch.uint8), ValueError, "non-empty"),
    ],
)
def test_png_encoder_rejects_bad_input(pixels, error, word):
    with pytest.raises(error, match=word):
        encode_png(pixels)


def test_png_decoder_reads_every_row_filter(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    # pillow's adaptive filtering picks Sub/Up/Average/Paeth rows on this content
    y, x = torch.meshgrid(torch.arange(40), torch.arange(50), indexing="ij")
    img = torch.stack([(x * 5) % 256, (y * 7 + x) % 256, ((x * y) // 3) % 256], -1).to(torch.uint8)
    img[10:20, 5:30] = torch.randint(0, 256, (10, 25, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    import numpy as np

    filters = set()
    for mode, pixels in (("RGB", img), ("RGBA", torch.cat([img, img[..., :1]], -1)), ("L", img[..., 0])):
        path = tmp_path / f"{mode}.png"
        PIL.fromarray(np.ascontiguousarray(pixels.numpy()), mode=mode).save(path, optimize=False)
        filters |= {row[0] for row in _raw_rows(path.read_bytes())}
        decoded = read_png(path)
        assert torch.equal(decoded, pixels if pixels.dim() == 3 else pixels[..., None]), mode
    assert filters >= {1, 2, 4}, f"the test images should exercise the row filters, got {filters}"


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filtered_png(pixels, filters):
    """A PNG whose row ``y`` uses filter ``filters[y]``, written from the spec's definitions."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels).tolist()
    raw = bytearray()
    for y, (ftype, row) in enumerate(zip(filters, rows)):
        prev = rows[y - 1] if y else [0] * len(row)
        out = []
        for i, value in enumerate(row):
            a = row[i - channels] if i >= channels else 0
            b, c = prev[i], (prev[i - channels] if i >= channels else 0)
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][ftype]
            out.append((value - pred) % 256)
        raw += bytes([ftype, *out])
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_decoder_undoes_each_filter(channels):
    g = torch.Generator().manual_seed(channels)
    pixels = torch.randint(0, 256, (10, 7, channels), dtype=torch.uint8, generator=g)
    filters = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]
    assert torch.equal(decode_png(_filtered_png(pixels, filters)), pixels)


def _raw_rows(data):
    chunks = read_chunks(data)
    width, height, _, color, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    stride = width * {0: 1, 4: 2, 2: 3, 6: 4}[color] + 1
    raw = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    return [raw[i * stride : (i + 1) * stride] for i in range(height)]


def test_png_decoder_refuses_what_it_cannot_read():
    good = encode_png(torch.zeros(2, 2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="signature"):
        decode_png(b"GIF89a" + good)
    corrupt = bytearray(good)
    corrupt[20] ^= 0xFF  # inside IHDR
    with pytest.raises(ValueError, match="CRC"):
        decode_png(bytes(corrupt))
    header = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)
    sixteen = good[:8] + struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    with pytest.raises(ValueError, match="16"):
        decode_png(sixteen)


def test_make_grid_layout():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.ones(2, 3, 4, 4) * 0.5
    grid = make_grid([a, b], pad=1, background=1.0)
    assert grid.shape == (2 * 4 + 3, 2 * 4 + 3, 3)
    assert (grid[1:5, 1:5] == 0).all() and (grid[1:5, 6:10] == 128).all() and (grid[6:10, 6:10] == 128).all()
    assert (grid[0] == 255).all() and (grid[:, 5] == 255).all() and (grid[-1] == 255).all()


# ----------------------------------------------------------------------------------------
# nda preview
# ----------------------------------------------------------------------------------------


def cell(grid, row, col, size, pad=2):
    top, left = pad + row * (size + pad), pad + col * (size + pad)
    return grid[top : top + size, left : left + size]


def to_uint8(x):
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)


def test_preview_writes_sources_and_negatives(tmp_path):
    out = tmp_path / "grid.png"
    n, size, seed = 3, 24, 5
    result = invoke("preview", "--transforms", "jigsaw:grid=3,cutout", "-t", "stitch", "--n", n,
                    "--size", size, "--seed", seed, "--out", out)
    assert "columns = source, jigsaw:grid=3, cutout, stitch" in result.output
    data = out.read_bytes()
    grid = inflate_png(data)
    assert grid.shape == (n * size + (n + 1) * 2, 4 * size + 5 * 2, 3)
    # Replay: same seed -> same sources, then each transform in column order.
    g = torch.Generator().manual_seed(seed)
    sources = procedural_images(n, size, g)
    columns = [sources] + [transforms.build(s)(sources, generator=g) for s in ("jigsaw:grid=3", "cutout", "stitch")]
    for col, images in enumerate(columns):
        for row in range(n):
            assert torch.equal(cell(grid, row, col, size), to_uint8(images[row])), (row, col)
    assert not torch.equal(cell(grid, 0, 0, size), cell(grid, 0, 1, size))
    text = dict(p.split(b"\0", 1) for k, p in read_chunks(data) if k == b"tEXt")
    assert text[b"Columns"] == b"source, jigsaw:grid=3, cutout, stitch"


def test_preview_without_matplotlib_says_labels_are_missing(tmp_path):
    result = invoke("preview", "--n", 1, "--size", 8, "-t", "noise", "--out", tmp_path / "p.png")
    assert "no column labels" in result.output and "nda-plugins[demo]" in result.output


def test_preview_with_matplotlib_labels_each_column(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from nda_plugins.demo import _output

    monkeypatch.undo()  # the real matplotlib, not the autouse fixture's stand-in
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    calls = []
    real = _output.save_labelled_grid

    def spy(path, images, **labels):
        calls.append(dict(labels, images=images))
        return real(path, images, **labels)

    monkeypatch.setattr(_output, "save_labelled_grid", spy)
    out = tmp_path / "lab.png"
    result = invoke("preview", "-t", "jigsaw,cutout", "--n", 2, "--size", 16, "--seed", 3, "--out", out)
    assert "columns (labelled on the image) = source, jigsaw, cutout" in result.output
    (call,) = calls
    assert call["col_labels"] == ["source", "jigsaw", "cutout"] and call["nrow"] == 3
    assert call["images"].shape == (6, 3, 16, 16)
    # Row-major: row 0 is source 0, its jigsaw, its cutout.
    g = torch.Generator().manual_seed(3)
    sources = procedural_images(2, 16, g)
    assert torch.allclose((call["images"][0] + 1) / 2, sources[0], atol=1e-6)
    assert torch.allclose((call["images"][3] + 1) / 2, sources[1], atol=1e-6)
    data = out.read_bytes()
    text = dict(p.split(b"\0", 1) for k, p in read_chunks(data) if k == b"tEXt")
    assert text[b"Columns"] == b"source, jigsaw, cutout"


def test_preview_default_shows_every_transform_but_source(tmp_path):
    out = tmp_path / "all.png"
    result = invoke("preview", "--n", 2, "--size", 16, "--out", out)
    expected = ["source", *[t for t in transforms.available() if t != "source"]]
    assert f"columns = {', '.join(expected)}" in result.output
    assert inflate_png(out.read_bytes()).shape[1] == len(expected) * 16 + (len(expected) + 1) * 2


def test_preview_is_seeded_and_never_overwrites_silently(tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    invoke("preview", "--n", 2, "--size", 16, "--seed", 1, "--out", a)
    invoke("preview", "--n", 2, "--size", 16, "--seed", 1, "--out", b)
    invoke("preview", "--n", 2, "--size", 16, "--seed", 2, "--out", c)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    before = a.read_bytes()
    msg = bad_flag(["preview", "--n", 2, "--size", 16, "--seed", 2, "--out", a], "--out")
    assert "--force" in msg and a.read_bytes() == before
    invoke("preview", "--n", 2, "--size", 16, "--seed", 2, "--out", a, "--force")
    assert a.read_bytes() == c.read_bytes()


def test_preview_from_a_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    red = torch.zeros(10, 20, 3, dtype=torch.uint8)
    red[..., 0] = 255
    gray = torch.full((12, 12), 100, dtype=torch.uint8)
    write_png(folder / "a.png", red)
    write_png(folder / "b.png", gray)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "f.png"
    result = invoke("preview", "--images", folder, "--n", 5, "--size", 8, "--transforms", "noise", "--out", out)
    assert "2 image(s) from" in result.output
    grid = inflate_png(out.read_bytes())
    assert (cell(grid, 0, 0, 8) == torch.tensor([255, 0, 0], dtype=torch.uint8)).all()
    assert (cell(grid, 1, 0, 8) == 100).all()


def test_preview_folder_without_pillow(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    write_png(folder / "a.png", torch.zeros(8, 8, 3, dtype=torch.uint8))
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff")
    monkeypatch.setitem(sys.modules, "PIL", None)  # pillow "not installed"
    result = CliRunner().invoke(main, ["preview", "--images", str(folder), "--out", str(tmp_path / "o.png")])
    assert result.exit_code == 1 and "pillow" in result.output and "b.jpg" in result.output
    # PNG alone needs no pillow
    result = CliRunner().invoke(main, ["preview", "--images", str(folder), "--n", 1, "-t", "noise",
                                       "--out", str(tmp_path / "o.png")])
    assert result.exit_code == 0, result.output


def test_preview_reads_jpeg_with_pillow(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    folder = tmp_path / "imgs"
    folder.mkdir()
    PIL.new("RGB", (30, 20), (0, 0, 255)).save(folder / "a_blue.jpg")
    PIL.new("RGB", (8, 8), (0, 255, 0)).convert("P").save(folder / "b_palette.png")  # not for our decoder
    out = tmp_path / "j.png"
    invoke("preview", "--images", folder, "--n", 2, "--size", 8, "-t", "noise", "--out", out)
    grid = inflate_png(out.read_bytes())
    blue, green = cell(grid, 0, 0, 8), cell(grid, 1, 0, 8)
    assert (blue[..., 2] > 240).all() and (blue[..., :2] < 15).all()
    assert (green == torch.tensor([0, 255, 0], dtype=torch.uint8)).all()


@pytest.mark.parametrize(
    "args, flag, word",
    [
        (["--n", 0], "--n", "0"),
        (["--size", 2], "--size", "2"),
        (["--seed", -1], "--seed", "-1"),
        (["--transforms", "bogus"], "--transforms", "bogus"),
        (["--transforms", "jigsaw:grid=abc"], "--transforms", "grid"),
        (["--transforms", "jigsaw:nosuch=1"], "--transforms", "nosuch"),
        (["--transforms", "source"], "--transforms", "source"),
        (["--transforms", "mixup", "--n", 1], "--n", "--n 2 or more"),
        (["--out", "x.jpg"], "--out", ".png"),
        (["--out", "no/such/dir/x.png"], "--out", "does not exist"),
        (["--images", "no-such-folder"], "--images", "no-such-folder"),
    ],
)
def test_preview_bad_flags_are_named(tmp_path, monkeypatch, args, flag, word):
    monkeypatch.chdir(tmp_path)
    msg = bad_flag(["preview", "--size", 16, *args], flag)
    assert word in msg
    assert not (tmp_path / "nda-preview.png").exists()


def test_preview_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    bad_flag(["preview", "--images", tmp_path / "empty", "--out", tmp_path / "x.png"], "--images")


def test_split_specs():
    assert split_specs(("jigsaw:grid=3,stitch", "cutmix:a=1,b=2,noise", " cutout ,")) == [
        "jigsaw:grid=3", "stitch", "cutmix:a=1,b=2", "noise", "cutout",
    ]


def test_procedural_images_are_seeded_and_distinct():
    a = procedural_images(4, 32, torch.Generator().manual_seed(0))
    b = procedural_images(4, 32, torch.Generator().manual_seed(0))
    assert a.shape == (4, 3, 32, 32) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    flat = a.flatten(1)
    assert (torch.cdist(flat, flat) + torch.eye(4)).min() > 0  # no two images alike


# ----------------------------------------------------------------------------------------
# nda doctor
# ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_extensions(tmp_path, monkeypatch):
    root = tmp_path / "torch_ext"
    built = root / "py311_cu121" / "bias_act_plugin"
    built.mkdir(parents=True)
    (built / "bias_act_plugin.so").write_bytes(b"")
    stale = root / "py311_cu121" / "upfirdn2d_plugin"
    stale.mkdir(parents=True)
    (stale / "lock").write_text("")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


def test_doctor_reports_versions_extras_and_fused_ops(fake_extensions, monkeypatch):
    from nda_plugins import _patching

    monkeypatch.setattr(_patching, "torch_waits_on_lock_files", lambda: True)  # torch <= 2.13
    out = invoke("doctor").output
    assert f"torch           {torch.__version__}" in out
    assert "python          " in out and "ninja" in out and "gcc" in out and "nvcc" in out
    for extra in ("demo", "lightly", "mmengine", "test"):
        assert f"  {extra} " in out
    assert "bias_act_plugin   built: " + str(fake_extensions / "py311_cu121" / "bias_act_plugin" / "bias_act_plugin.so") in out
    lock = fake_extensions / "py311_cu121" / "upfirdn2d_plugin" / "lock"
    assert "upfirdn2d_plugin  not built" in out and "STALE build lock" in out and f"deletes it): {lock}" in out
    monkeypatch.setattr(_patching, "torch_waits_on_lock_files", lambda: False)  # torch 2.14: flock
    assert f"build lock file, not held (this torch locks by flock: it blocks nothing): {lock}" in invoke("doctor").output


def test_doctor_json(fake_extensions):
    info = json.loads(invoke("doctor", "--json").output)
    assert info["torch"] == torch.__version__ and info["cuda_available"] == torch.cuda.is_available()
    assert info["extras"]["test"]["pytest"] == "ok"
    assert info["fused_ops"]["bias_act_plugin"]["built"] and not info["fused_ops"]["upfirdn2d_plugin"]["built"]
    [[lock, state]] = info["fused_ops"]["upfirdn2d_plugin"]["locks"]
    assert lock.endswith("upfirdn2d_plugin/lock") and state in ("stale", "free")
    assert "upstream" not in info


def test_doctor_upstream_without_patching_module(tmp_path, monkeypatch, fake_extensions):
    monkeypatch.setitem(sys.modules, "nda_plugins._patching", None)
    out = invoke("doctor", "--upstream", tmp_path).output
    assert f"upstream {tmp_path}: unavailable" in out and "cannot tell" in out


def test_doctor_upstream_asks_the_patching_module(tmp_path, monkeypatch, fake_extensions):
    seen = []
    fake = types.ModuleType("nda_plugins._patching")

    def status(path):
        seen.append(Path(path))
        return {"upstream": "stylegan2-ada-pytorch", "series": {"compat": "applied", "nda": "not applied"}}

    fake.status = status
    monkeypatch.setitem(sys.modules, "nda_plugins._patching", fake)
    out = invoke("doctor", "--upstream", tmp_path).output
    assert seen == [tmp_path]
    assert "upstream: stylegan2-ada-pytorch" in out and "compat: applied" in out and "nda: not applied" in out

    def broken(path):
        raise RuntimeError("not a git checkout")

    fake.status = broken
    out = invoke("doctor", "--upstream", tmp_path).output
    assert f"upstream {tmp_path}: error" in out and "not a git checkout" in out


def test_doctor_upstream_builds_fused_ops_only_with_cuda(tmp_path, monkeypatch, fake_extensions):
    fake = types.ModuleType("nda_plugins._patching")
    fake.status = lambda path: {"upstream": "stylegan2-ada"}
    built = []

    def fused_ops(path):
        built.append(Path(path))
        return {"cuda": True, "bias_act": {"built": True, "error": None}, "upfirdn2d": {"built": False, "error": "nvcc failed"}}

    fake.fused_ops = fused_ops
    monkeypatch.setitem(sys.modules, "nda_plugins._patching", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = invoke("doctor", "--upstream", tmp_path).output
    assert "fused ops are CUDA-only and are not built here" in out and built == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    info = json.loads(invoke("doctor", "--upstream", tmp_path, "--json").output)
    assert built == [tmp_path]
    assert info["upstream"]["fused_ops"]["upfirdn2d"] == {"built": False, "error": "nvcc failed"}


def test_doctor_bad_upstream_flag(tmp_path):
    bad_flag(["doctor", "--upstream", tmp_path / "missing"], "--upstream")


def test_preview_two_image_transforms_with_one_source_name_the_cli_flags(tmp_path):
    msg = bad_flag(["preview", "--n", 1, "--transforms", "jigsaw,stitch", "--out", tmp_path / "a.png"], "--n")
    assert "'stitch'" in msg and "'jigsaw'" not in msg and "at least 2 source images" in msg
    assert "partner=" not in msg  # a CLI user cannot pass a Python argument
    folder = tmp_path / "one"
    folder.mkdir()
    write_png(folder / "a.png", torch.zeros(8, 8, 3, dtype=torch.uint8))
    msg = bad_flag(["preview", "--images", folder, "--n", 4, "-t", "cutmix", "--out", tmp_path / "b.png"], "--images")
    assert "folder with at least 2 images" in msg
    # one-image transforms still work on one source
    invoke("preview", "--n", 1, "--size", 16, "-t", "jigsaw,cutout", "--out", tmp_path / "c.png")
    assert (tmp_path / "c.png").is_file()


@pytest.mark.parametrize("exe, package", [(True, False), (False, False), (False, True)])
def test_doctor_ninja_line_and_extras_agree(monkeypatch, fake_extensions, exe, package):
    from nda_plugins.cli import doctor as doctor_mod

    real_which, real_find_spec = shutil.which, importlib.util.find_spec
    monkeypatch.setattr(doctor_mod.shutil, "which",
                        lambda cmd, *a, **k: ("/opt/fake/ninja" if exe else None) if cmd == "ninja" else real_which(cmd, *a, **k))
    monkeypatch.setattr(doctor_mod.importlib.util, "find_spec",
                        lambda name, *a, **k: (object() if package else None) if name == "ninja" else real_find_spec(name, *a, **k))
    monkeypatch.setattr(doctor_mod, "extras_from_metadata", lambda: {"stylegan2-ada": ["ninja"]})
    monkeypatch.setattr(doctor_mod, "_run", lambda cmd: "1.11.1 (/opt/fake/ninja)" if cmd[0] == "ninja" and exe else None)
    info = json.loads(invoke("doctor", "--json").output)
    out = invoke("doctor").output
    ninja_line = next(line for line in out.splitlines() if line.startswith("ninja"))
    extras_line = next(line for line in out.splitlines() if line.strip().startswith("stylegan2-ada"))
    if exe:
        assert "1.11.1" in ninja_line and info["extras"]["stylegan2-ada"]["ninja"] == "ok"
        assert extras_line.split()[-1] == "ok"
    else:
        assert "ninja" in extras_line and "missing" in extras_line
        assert info["extras"]["stylegan2-ada"]["ninja"] != "ok"
        if package:
            assert "no ninja executable on PATH" in ninja_line and "no ninja executable on PATH" in extras_line
        else:
            assert ninja_line.split()[-2:] == ["not", "found"] and "not installed" in extras_line


# ----------------------------------------------------------------------------------------
# nda patch on folders that are no checkout
# ----------------------------------------------------------------------------------------


def test_patch_check_on_a_folder_that_is_no_checkout(tmp_path):
    (tmp_path / "notes.txt").write_text("not an upstream\n")
    result = CliRunner().invoke(main, ["patch", "check", "stylegan2-ada", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "not a checkout of stylegan2-ada" in result.output and "modified" not in result.output
    assert "git clone https://github.com/NVlabs/stylegan2-ada-pytorch" in result.output
    # DiffAugment's series patches a subfolder of its repository: the hint says which
    result = CliRunner().invoke(main, ["patch", "check", "data-efficient-gans", str(tmp_path)])
    assert result.exit_code == 1 and "DiffAugment-stylegan2-pytorch/" in result.output
    # pix2pix's series also creates a file: its absence alone does not make a checkout
    result = CliRunner().invoke(main, ["patch", "check", "pix2pix", str(tmp_path)])
    assert result.exit_code == 1 and "not a checkout of pix2pix" in result.output


def test_patch_check_names_missing_files_as_missing(tmp_path):
    from nda_plugins import _patching

    series = _patching.get_series("stylegan2-ada")
    present = next(iter(series.files))
    (tmp_path / present).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / present).write_text("# some other file\n")
    result = CliRunner().invoke(main, ["patch", "check", "stylegan2-ada", str(tmp_path)])
    assert result.exit_code == 1, result.output
    others = [f for f in series.files if f != present]
    assert f"{present} differ" in result.output and f"{', '.join(others)} missing" in result.output


def test_patch_status_on_an_unknown_folder_fails_clearly(tmp_path):
    result = CliRunner().invoke(main, ["patch", "status", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "is not a checkout of any known upstream" in result.output and "stylegan2-ada" in result.output
    assert "unknown upstream: unknown" not in result.output
    result = CliRunner().invoke(main, ["patch", "status", str(tmp_path), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["upstream"] is None
    result = CliRunner().invoke(main, ["patch", "status", str(tmp_path), "--name", "insgen"])
    assert result.exit_code == 1 and "not a checkout of insgen" in result.output


def test_list_shows_transform_options_from_their_signatures():
    data = json.loads(invoke("list", "transforms", "--json").output)
    options = {row["name"]: {o["name"]: o for o in row["options"]} for row in data["transforms"]}
    assert options["jigsaw"]["grid"] == {"name": "grid", "required": False, "default": "2"}
    assert set(options["mixup"]) == {"alpha", "low", "high"}
    out = invoke("list", "transforms").output
    assert "jigsaw" in out and "grid=2" in out and "options (* required)" in out
