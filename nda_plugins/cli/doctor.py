"""``nda doctor``: what this machine has, for bug reports and before building the fused ops."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click

from .._patching import FUSED_OPS, lock_state, torch_extensions_dirs

#: The extras of ``pyproject.toml`` and the modules each needs, used when the installed
#: distribution's metadata cannot be read (e.g. running from a source tree).
FALLBACK_EXTRAS: dict[str, list[str]] = {
    "bench": ["kornia"],
    "demo": ["matplotlib"],
    "lightly": ["lightly", "torchvision"],
    "mmengine": ["mmengine"],
    "stylegan2-ada": ["ninja", "numpy", "PIL", "scipy", "psutil", "requests"],
    "test": ["pytest", "numpy", "matplotlib"],
}
# Distribution names whose import name differs from the distribution name.
_IMPORT_NAMES = {"pillow": "PIL", "pyyaml": "yaml", "scikit-learn": "sklearn", "opencv-python": "cv2"}
#: What ``nda doctor`` says of a build lock in each state of ``_patching.lock_state``.
_LOCK_NOTES = {
    "held": "build lock, held by a running build",
    "stale": "STALE build lock (nothing here holds it, and this torch waits while it exists; "
             "`nda patch build-ops PATH --clear-stale-locks` deletes it)",
    "free": "build lock file, not held (this torch locks by flock: it blocks nothing)",
    "unknown": "build lock (cannot tell whether a build holds it: no /proc)",
}


def _run(cmd: list[str]) -> str | None:
    """First line of ``cmd``'s output mentioning a version, or ``None`` if it cannot run."""
    exe = shutil.which(cmd[0])
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    for line in reversed(lines) if cmd[0] == "nvcc" else lines:
        if re.search(r"\d+\.\d+", line):
            return f"{line} ({exe})"
    return f"{lines[0] if lines else '?'} ({exe})"


def extras_from_metadata() -> dict[str, list[str]]:
    """``{extra: [import names]}`` from the installed ``nda-plugins`` metadata, else the fallback."""
    from importlib import metadata

    try:
        requires = metadata.requires("nda-plugins") or []
    except metadata.PackageNotFoundError:
        return dict(FALLBACK_EXTRAS)
    extras: dict[str, list[str]] = {}
    for req in requires:
        match = re.match(r"^\s*([A-Za-z0-9._-]+)(\[[^\]]*\])?[^;]*;\s*(.*)$", req)
        if not match:
            continue
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", match.group(3))
        if not extra:
            continue
        dist = match.group(1).lower()
        if dist.replace("_", "-") == "nda-plugins":  # e.g. all = nda-plugins[...]
            continue
        extras.setdefault(extra.group(1), []).append(_IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return extras or dict(FALLBACK_EXTRAS)


def check_import(module: str) -> str | None:
    """``None`` if ``module`` imports, else a one-line reason."""
    if module in sys.modules:
        return None
    try:
        if importlib.util.find_spec(module) is None:
            return "not installed"
        importlib.import_module(module)
    except Exception as exc:  # e.g. torchvision built for another torch raises RuntimeError
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return None


def check_requirement(module: str) -> str | None:
    """Like :func:`check_import`, except for ``ninja``: what builds the fused ops is the ``ninja``
    executable on PATH (``torch.utils.cpp_extension`` runs it), whether it came from the Python
    package or the system, so the same answer is given here and on the report's ``ninja`` line."""
    if module != "ninja":
        return check_import(module)
    if shutil.which("ninja") is not None:
        return None
    if importlib.util.find_spec("ninja") is not None:
        return "python package installed, but no ninja executable on PATH"
    return "not installed (neither the executable nor the python package)"


def find_fused_ops(dirs: list[Path] | None = None) -> dict[str, dict]:
    """Look for built fused-op libraries and build locks.

    Returns:
        ``{op: {"built": [paths of .so/.pyd], "locks": [[path of a lock file, its state]]}}`` for
        each name in :data:`FUSED_OPS`; the state is :func:`nda_plugins._patching.lock_state`'s.
    """
    found = {op: {"built": [], "locks": []} for op in FUSED_OPS}
    for root in dirs if dirs is not None else torch_extensions_dirs():
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            for op in FUSED_OPS:
                if op not in str(path.relative_to(root)):
                    continue
                if path.suffix in (".so", ".pyd") and path.name.startswith(op):
                    found[op]["built"].append(str(path))
                elif path.name == "lock":
                    found[op]["locks"].append([str(path), lock_state(path)])
    return found


def upstream_status(path: Path) -> tuple[str, object]:
    """Ask ``nda_plugins._patching.status(path)`` if the patching module is available."""
    try:
        patching = importlib.import_module("nda_plugins._patching")
    except ImportError as exc:
        return "unavailable", f"nda_plugins._patching is not available ({exc}); cannot tell"
    status = getattr(patching, "status", None)
    if not callable(status):
        return "unavailable", "nda_plugins._patching has no status(path) function; cannot tell"
    try:
        return "ok", status(path)
    except Exception as exc:  # report, do not crash the doctor
        return "error", f"{type(exc).__name__}: {exc}"


def upstream_fused_ops(path: Path, cuda: bool) -> object:
    """Whether the checkout's fused CUDA ops (bias_act, upfirdn2d) build and load.

    With a CUDA device this runs upstream's own build (``nda_plugins._patching.fused_ops``), the
    same calls training makes; upstream falls back to the slow reference ops with only a
    warning when the build fails, so this is where a failure becomes visible.
    """
    if not cuda:
        return "no CUDA device: the fused ops are CUDA-only and are not built here"
    try:
        patching = importlib.import_module("nda_plugins._patching")
        return patching.fused_ops(path)
    except Exception as exc:  # report, do not crash the doctor
        return f"{type(exc).__name__}: {exc}"


def plugin_report() -> dict:
    """``{"registered": [names], "broken": {name: reason}}`` from a fresh plugin manager."""
    from .._manager import broken_plugins, new_plugin_manager

    pm = new_plugin_manager(on_broken=lambda name, reason: None)
    return {"registered": [name for name, _ in pm.list_name_plugin()],
            "broken": dict(broken_plugins(pm))}


def gather(upstream: Path | None = None) -> dict:
    """Everything ``nda doctor`` reports, as a JSON-friendly dict."""
    import torch

    from .. import __version__

    info: dict = {
        "nda_plugins": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
    }
    try:
        from torch.utils.cpp_extension import CUDA_HOME
    except Exception:  # pragma: no cover - very old or broken torch
        CUDA_HOME = None
    info["cuda_home"] = CUDA_HOME
    info["ninja"] = _run(["ninja", "--version"])
    if info["ninja"] is None and importlib.util.find_spec("ninja") is not None:
        info["ninja"] = "python package installed, but no ninja executable on PATH"
    info["gcc"] = _run(["gcc", "--version"])
    if os.environ.get("CXX"):
        info["cxx"] = _run([os.environ["CXX"], "--version"])
    nvcc = "nvcc"
    if shutil.which("nvcc") is None and CUDA_HOME:
        nvcc = str(Path(CUDA_HOME) / "bin" / "nvcc")
    info["nvcc"] = _run([nvcc, "--version"])
    info["extras"] = {
        extra: {mod: check_requirement(mod) or "ok" for mod in mods}
        for extra, mods in sorted(extras_from_metadata().items())
    }
    info["plugins"] = plugin_report()
    info["torch_extensions_dirs"] = [str(d) for d in torch_extensions_dirs()]
    info["fused_ops"] = find_fused_ops()
    if upstream is not None:
        kind, value = upstream_status(upstream)
        info["upstream"] = {"path": str(upstream), "status": kind, "report": value,
                            "fused_ops": upstream_fused_ops(upstream, info["cuda_available"])}
    return info


def _fmt(value: object) -> str:
    if value is None:
        return "not found"
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def _print_report(value: object, indent: str = "    ") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                click.echo(f"{indent}{key}:")
                _print_report(item, indent + "  ")
            else:
                click.echo(f"{indent}{key}: {_fmt(item)}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            click.echo(f"{indent}- {item}")
    else:
        for line in str(value).splitlines() or [""]:
            click.echo(f"{indent}{line}")


@click.command(name="doctor")
@click.option(
    "--upstream",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="An upstream checkout (e.g. stylegan2-ada-pytorch); report whether it is patched.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def doctor(upstream: Path | None, as_json: bool) -> None:
    """Report Python/torch/CUDA/cuDNN, ninja and compilers, installed extras, built fused ops,
    and (with --upstream) whether an upstream checkout is patched."""
    info = gather(upstream)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for key in ("nda_plugins", "python", "platform", "torch", "cuda_available", "torch_cuda", "cudnn",
                "gpus", "cuda_home", "ninja", "gcc", "cxx", "nvcc"):
        if key not in info:
            continue
        value = info[key]
        if isinstance(value, list):
            value = ", ".join(value) if value else None
        click.echo(f"{key:15} {_fmt(value)}")
    click.echo("extras:")
    for extra, mods in info["extras"].items():
        missing = {m: r for m, r in mods.items() if r != "ok"}
        state = "ok" if not missing else "missing " + ", ".join(f"{m} ({r})" for m, r in missing.items())
        click.echo(f"  {extra:13} {state}")
    plugins = info["plugins"]
    click.echo(f"plugins         {len(plugins['registered'])} registered: {', '.join(plugins['registered'])}")
    for name, reason in plugins["broken"].items():
        click.echo(f"  BROKEN {name}: {reason}")
    click.echo("fused ops (StyleGAN2-ADA bias_act / upfirdn2d) in " + ", ".join(info["torch_extensions_dirs"]) + ":")
    for op, found in info["fused_ops"].items():
        state = "built: " + ", ".join(found["built"]) if found["built"] else "not built"
        click.echo(f"  {op:17} {state}")
        for lock, state in found["locks"]:
            click.echo(f"  {'':17} {_LOCK_NOTES[state]}: {lock}")
    if upstream is not None:
        up = info["upstream"]
        click.echo(f"upstream {up['path']}: {up['status']}")
        _print_report(up["report"])
        click.echo("  fused ops of this checkout:")
        _print_report(up["fused_ops"])
