"""The logic of ``nda patch``: identify an upstream checkout, check, apply and revert a series.

A series lives in ``nda_plugins/patches/<name>/``: ``git format-patch`` files, a ``series`` file
(their order, with comments) and ``upstream.json``::

    {"name": ..., "repo": ..., "commit": <pinned sha>, "subdir": "" | "<folder in repo>",
     "aliases": [...], "files": {"<path>": {"pristine": <sha256>, "patched": <sha256>}}}

A checkout is identified by the SHA-256 of the files the series touches (so a tarball without
``.git`` works too); for a git checkout the commit is reported beside it. Applying is staged:
the touched files are copied to a work folder ``.nda-patch`` in the checkout, every patch is
checked and applied there with ``git apply`` in order, the result is verified against the
recorded hashes, and only then are the files replaced in the checkout (each with ``os.replace``).
Before the first replacement, backups and a journal are flushed to disk; a failure rolls back at
once, and a run killed at any moment is rolled back by the next ``apply`` or ``revert``
(:func:`recover`). A failed apply therefore leaves the tree as it was. Revert runs the same in
reverse with ``git apply -R``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nda_plugins.patches import ROOT as PATCHES_ROOT
from nda_plugins.patches import series_dirs

#: states of a checkout with respect to one series
PRISTINE, APPLIED, PARTIAL, MODIFIED = "pristine", "applied", "partial", "modified"
#: None of the files a series patches exists: the folder is no checkout of that upstream.
NOT_CHECKOUT = "not a checkout"


class PatchError(Exception):
    """A patch command cannot proceed; the message says why and what to do."""


@dataclass
class Series:
    """One upstream's patch series.

    Attributes:
        name: the series name (folder name), e.g. ``"stylegan2-ada"``.
        folder: the folder holding it.
        patches: patch files in order.
        comments: ``{patch file name: the comment lines above it in series}``.
        meta: the parsed ``upstream.json``.
    """

    name: str
    folder: Path
    patches: list[Path]
    comments: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> dict[str, dict[str, str | None]]:
        return self.meta.get("files", {})

    @property
    def commit(self) -> str:
        return self.meta.get("commit", "")

    @property
    def subdir(self) -> str:
        return self.meta.get("subdir", "") or ""


def parse_series(text: str) -> tuple[list[str], dict[str, str]]:
    """Patch names in order and the comment block above each, from a ``series`` file.

    Raises:
        PatchError: a name listed twice or a line that is not a ``.patch`` name.
    """
    names: list[str] = []
    comments: dict[str, str] = {}
    pending: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            pending = []
            continue
        if line.startswith("#"):
            pending.append(line.lstrip("#").strip())
            continue
        name = line.split("#", 1)[0].strip()
        if not name.endswith(".patch") or "/" in name:
            raise PatchError(f"series line {lineno}: expected a NNNN-subject.patch file name, got {line!r}")
        if name in names:
            raise PatchError(f"series line {lineno}: {name} is listed twice")
        names.append(name)
        comments[name] = " ".join(pending)
        pending = []
    return names, comments


def load_series(folder: Path) -> Series:
    """Read one series folder (``series`` + ``upstream.json`` + patch files)."""
    folder = Path(folder)
    names, comments = parse_series((folder / "series").read_text(encoding="utf-8"))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise PatchError(f"series {folder.name}: listed patches missing from {folder}: {missing}")
    meta_path = folder / "upstream.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    return Series(folder.name, folder, [folder / n for n in names], comments, meta)


def available() -> dict[str, Series]:
    """Every series shipped with nda-plugins, by name."""
    return {name: load_series(folder) for name, folder in series_dirs().items()}


def get_series(name: str) -> Series:
    """The series called ``name`` (or one of its aliases).

    Raises:
        PatchError: no such series (the message lists the known names).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    all_series = available()
    for series in all_series.values():
        if name == series.name or name in series.meta.get("aliases", []):
            return series
    raise PatchError(f"unknown upstream {name!r}; known: {', '.join(sorted(all_series)) or '(none)'}")


def touched_files(patch: Path) -> list[str]:
    """Paths a ``git format-patch`` file changes (``b/`` side; ``a/`` for deletions)."""
    out = []
    for line in Path(patch).read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^diff --git a/(\S+) b/(\S+)$", line)
        if m and m.group(2) not in out:
            out.append(m.group(2))
    return out


def sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes, or ``None`` when it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------------------
# Looking at a checkout
# ------------------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=check)


def git_info(path: Path) -> dict[str, Any] | None:
    """``{"toplevel", "commit", "modified"}`` for a git work tree, else ``None``.

    ``modified`` lists tracked files under ``path`` with local changes (untracked files, e.g.
    datasets and training runs, are ignored), relative to ``path``.
    """
    path = Path(path)
    top = _git(["rev-parse", "--show-toplevel"], path)
    if top.returncode != 0:
        return None
    head = _git(["rev-parse", "HEAD"], path)
    st = _git(["status", "--porcelain", "--untracked-files=no", "--", "."], path)
    prefix = _git(["rev-parse", "--show-prefix"], path).stdout.strip()
    modified = []
    for line in st.stdout.splitlines():
        rel = line[3:].split(" -> ")[-1].strip('"')
        modified.append(rel[len(prefix):] if prefix and rel.startswith(prefix) else rel)
    return {
        "toplevel": top.stdout.strip(),
        "commit": head.stdout.strip() if head.returncode == 0 else None,
        "modified": sorted(modified),
    }


def _root_for(series: Series, path: Path) -> Path:
    """The folder the series' paths are relative to (``path`` or ``path/subdir``)."""
    path = Path(path)
    if series.subdir and (path / series.subdir).is_dir() and not (path / next(iter(series.files), "")).is_file():
        return path / series.subdir
    return path


def series_state(series: Series, path: Path) -> dict[str, Any]:
    """Where ``path`` stands for ``series``: state, per-file states, git information.

    Returns:
        ``{"series", "root", "state", "files": {path: "pristine"|"patched"|"missing"|"unknown"},
        "git": git_info or None, "commit_matches": bool or None, "dirty": [...]}``. ``state`` is
        ``pristine`` / ``applied`` (every file as recorded), ``partial`` (a mix of the two) or
        ``modified`` (some file is neither), or ``not a checkout`` (none of the files exists). ``dirty`` lists locally changed tracked files that
        the series does not explain.
    """
    root = _root_for(series, path)
    per_file = {}
    for rel, hashes in series.files.items():
        digest = _digest(root / rel)
        if digest == hashes.get("pristine"):
            per_file[rel] = "pristine"
        elif digest == hashes.get("patched"):
            per_file[rel] = "patched"
        elif digest is None:
            per_file[rel] = "missing"
        else:
            per_file[rel] = "unknown"
    values = set(per_file.values())
    if values == {"pristine"}:
        state = PRISTINE
    elif values == {"patched"}:
        state = APPLIED
    elif values <= {"pristine", "patched"}:
        state = PARTIAL
    elif all(per_file[rel] == "missing" for rel, h in series.files.items() if h.get("pristine") is not None) \
            and "patched" not in values and "unknown" not in values:
        state = NOT_CHECKOUT  # (a file the series creates counts as pristine when absent)
    else:
        state = MODIFIED
    git = git_info(root)
    commit_matches = None
    dirty: list[str] = []
    if git is not None:
        commit_matches = bool(git["commit"]) and bool(series.commit) and git["commit"].startswith(series.commit[:7])
        dirty = [f for f in git["modified"] if not (f in per_file and per_file[f] == "patched")]
    return {
        "series": series.name,
        "root": str(root),
        "state": state,
        "files": per_file,
        "git": git,
        "commit_matches": commit_matches,
        "dirty": dirty,
    }


def identify(path: Path) -> tuple[Series, dict[str, Any]] | None:
    """The series whose recorded files match ``path`` (pristine, applied or partial), if any."""
    best = None
    for series in available().values():
        st = series_state(series, path)
        if st["state"] not in (MODIFIED, NOT_CHECKOUT):
            return series, st
        if best is None and st["commit_matches"]:
            best = (series, st)
    return best


def status(path: str | os.PathLike, name: str | None = None) -> dict[str, Any]:
    """A JSON-friendly report on an upstream checkout (used by ``nda doctor --upstream``).

    Args:
        path: the checkout.
        name: a series name; default: identify the checkout by its files.

    Returns:
        ``{"path", "upstream": name or None, "repo", "pinned", "state", "patches": [...],
        "commit", "commit_matches", "dirty", "files", "message"}``.
    """
    path = Path(path)
    if not path.is_dir():
        raise PatchError(f"{path} is not a folder")
    if name is not None:
        series = get_series(name)
        st = series_state(series, path)
    else:
        found = identify(path)
        if found is None:
            git = git_info(path)
            return {
                "path": str(path), "upstream": None, "state": "unknown",
                "commit": git["commit"] if git else None,
                "message": "not a known upstream checkout: no series' recorded files match "
                           f"(known: {', '.join(sorted(available()))})",
            }
        series, st = found
    interrupted = (Path(st["root"]) / WORK_DIR / _JOURNAL).is_file()
    messages = {
        PRISTINE: "pristine: `nda patch apply` can patch it",
        APPLIED: "the series is applied",
        PARTIAL: "partially patched (some files patched, some pristine); revert or restore the files",
        MODIFIED: "files differ from both the pinned upstream and the patched result",
        NOT_CHECKOUT: f"not a checkout of {series.name}: none of the files its series patches exist here; "
                      + _clone_hint(series),
    }
    return {
        "path": str(path),
        "upstream": series.name,
        "repo": series.meta.get("repo"),
        "pinned": series.commit,
        "root": st["root"],
        "state": st["state"],
        "patches": [p.name for p in series.patches],
        "commit": st["git"]["commit"] if st["git"] else None,
        "commit_matches": st["commit_matches"],
        "dirty": st["dirty"],
        "files": st["files"],
        "message": ("an interrupted `nda patch` run left a journal: the next `nda patch apply` or `revert` "
                    "rolls it back first" if interrupted else messages[st["state"]]),
        "interrupted": interrupted,
    }


# ------------------------------------------------------------------------------------------
# The fused CUDA ops
# ------------------------------------------------------------------------------------------

_FUSED_OPS_PROBE = r"""
import json, sys, warnings
sys.path.insert(0, '.')
out = {}
try:
    import torch
    out['cuda'] = torch.cuda.is_available()
    if out['cuda']:
        from torch_utils.ops import bias_act, upfirdn2d
        for name, mod in (('bias_act', bias_act), ('upfirdn2d', upfirdn2d)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                ok = bool(mod._init())
            out[name] = {'built': ok, 'error': None if ok else ' '.join(str(w.message) for w in caught)[-2000:]}
except Exception as exc:
    out['error'] = f'{type(exc).__name__}: {exc}'
print(json.dumps(out))
"""


def fused_ops(path: str | os.PathLike, *, timeout: float = 900.0) -> dict[str, Any]:
    """Build (or load from the cache) the checkout's fused CUDA ops and say whether it worked.

    Runs upstream's own ``bias_act._init()`` and ``upfirdn2d._init()`` in a subprocess inside the
    checkout -- the calls training makes, which fall back to the slow reference ops with only a
    warning when the build fails. Without a CUDA device nothing is built (the ops are CUDA only).

    Returns:
        ``{"cuda": bool, "bias_act": {"built", "error"}, "upfirdn2d": {...}}``, or with
        ``"error"`` when the probe itself failed.
    """
    root = Path(path)
    if not (root / "torch_utils" / "ops" / "bias_act.py").is_file():
        raise PatchError(f"{root} has no torch_utils/ops/bias_act.py; not a StyleGAN2-ADA-style checkout")
    import sys

    try:
        proc = subprocess.run([sys.executable, "-c", _FUSED_OPS_PROBE], cwd=root, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"building the fused ops took more than {timeout:g} s (a stale build lock? `nda "
                         "doctor` lists them; `nda patch build-ops --clear-stale-locks` deletes them)"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": (proc.stderr or proc.stdout)[-2000:]}


# ------------------------------------------------------------------------------------------
# Build locks of the fused ops
# ------------------------------------------------------------------------------------------
#
# torch.utils.cpp_extension builds each extension in its own folder under a `lock` file. Up to
# torch 2.13 that file is the lock: a build creates it and deletes it when done, and every other
# build waits for as long as it exists, so a build that was killed leaves a lock that makes every
# later build (upstream's `_init()` included) wait forever. torch 2.14 holds an OS lock (flock)
# on the file instead, which the kernel drops with its holder; the file stays, blocking nothing.

#: the build folders of StyleGAN2-ADA's fused ops (upstream's ``custom_ops.get_plugin`` names)
FUSED_OPS = ("bias_act_plugin", "upfirdn2d_plugin")

#: states of a build lock file (see :func:`lock_state`)
LOCK_HELD, LOCK_STALE, LOCK_FREE, LOCK_UNKNOWN = "held", "stale", "free", "unknown"


def torch_extensions_dirs() -> list[Path]:
    """Where ``torch.utils.cpp_extension`` puts built extensions (``TORCH_EXTENSIONS_DIR`` first)."""
    dirs = []
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        dirs.append(Path(os.environ["TORCH_EXTENSIONS_DIR"]))
    dirs.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch_extensions")
    return dirs


def torch_waits_on_lock_files() -> bool:
    """Whether this PyTorch's extension builder waits for as long as a ``lock`` file exists
    (torch <= 2.13), rather than holding an OS lock on it (torch 2.14). Read from its source,
    without importing it; ``True`` where that cannot be read."""
    import importlib.util

    try:
        source = Path(importlib.util.find_spec("torch.utils.cpp_extension").origin).read_text()
    except (AttributeError, ImportError, OSError, TypeError, ValueError):
        return True
    return "FileLock(" not in source


def _flock_held(path: Path) -> bool:
    """Whether some process holds an OS lock (flock) on ``path`` (``False`` without ``fcntl``)."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _open_here(path: Path) -> bool | None:
    """Whether a process of this machine that this user can inspect has ``path`` open (a torch
    <= 2.13 build keeps its lock file open while it builds); ``None`` without ``/proc``."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    target = os.path.realpath(path)
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) == target:
                    return True
            except OSError:
                continue
    return False


def lock_state(path: str | os.PathLike) -> str:
    """What a build ``lock`` file means for the next build with this PyTorch.

    Returns:
        :data:`LOCK_HELD` (a build holds it: flock, or open in a process of this machine),
        :data:`LOCK_STALE` (nothing here holds it, and this PyTorch waits while it exists: a
        build that was killed left it), :data:`LOCK_FREE` (nothing holds it, and this PyTorch
        locks by flock, so the file blocks nothing) or :data:`LOCK_UNKNOWN` (no ``/proc`` to
        tell whether a build has it open).
    """
    path = Path(path)
    if _flock_held(path):
        return LOCK_HELD
    if not torch_waits_on_lock_files():
        return LOCK_FREE
    opened = _open_here(path)
    if opened is None:
        return LOCK_UNKNOWN
    return LOCK_HELD if opened else LOCK_STALE


def fused_op_locks() -> list[tuple[Path, str]]:
    """``(lock file, state)`` for every lock in the build folders this Python and PyTorch use
    for the fused ops (:data:`FUSED_OPS`, versioned folders such as ``bias_act_plugin_v1``
    included)."""
    import sys

    import torch

    dirs = torch_extensions_dirs()
    if len(dirs) > 1:  # TORCH_EXTENSIONS_DIR: the ops' folders sit right in it
        root = dirs[0]
    else:  # <cache>/torch_extensions/py<major><minor>_<accelerator>, as cpp_extension names it
        if getattr(torch.version, "hip", None):
            accelerator = "rocm" + torch.version.hip.replace(".", "")
        elif torch.version.cuda:
            accelerator = "cu" + torch.version.cuda.replace(".", "")
        else:
            accelerator = "cpu"
        root = dirs[0] / f"py{sys.version_info.major}{sys.version_info.minor}_{accelerator}"
    return [(lock, lock_state(lock)) for op in FUSED_OPS for lock in sorted(root.glob(op + "*/lock"))]


# ------------------------------------------------------------------------------------------
# Staged apply / revert, with a journal that makes the swap atomic under a kill
# ------------------------------------------------------------------------------------------

#: the working folder inside a checkout's root: stage, backups and journal of one run
WORK_DIR = ".nda-patch"
_JOURNAL = "journal.json"


def _fault(point: str, count: int | None = None) -> None:
    """Test hook: kill or fail at a named point when ``NDA_PATCH_FAULT`` asks for it.

    ``NDA_PATCH_FAULT`` is ``"<kill|fail>:<point>[:<n>]"``, e.g. ``kill:swap:1`` (SIGKILL after
    the first file was swapped) or ``fail:swap:0``. Unset in normal use: a dictionary lookup.
    """
    spec = os.environ.get("NDA_PATCH_FAULT")
    if not spec:
        return
    action, _, rest = spec.partition(":")
    where, _, n = rest.partition(":")
    if where != point or (n and count is not None and int(n) != count):
        return
    if action == "kill":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(f"injected failure at {point}{'' if count is None else ' ' + str(count)}")


def _fsync_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a sibling temporary and ``os.replace``, flushed to disk."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _replace_file(src: Path, dst: Path, work: Path) -> None:
    """Put a copy of ``src`` (bytes and mode) at ``dst`` with one ``os.replace``."""
    tmp = work / "swap.tmp"
    shutil.copy2(src, tmp)
    try:
        os.replace(tmp, dst)
    except OSError as exc:
        import errno

        if exc.errno != errno.EXDEV:
            raise
        # ``dst`` lies on another file system than the work folder: go through a sibling.
        near = dst.with_name(dst.name + ".nda-tmp")
        shutil.move(str(tmp), near)
        os.replace(near, dst)


def _lock(root: Path):
    """An exclusive lock on ``root`` for this run (``None`` where ``fcntl`` is missing).

    Raises:
        PatchError: another ``nda patch`` is working on the same checkout.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError as exc:
        raise PatchError(f"{root} is not a folder that can be patched: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PatchError(f"another `nda patch` is working on {root}; wait for it to finish") from None
    return fd


def _unlock(fd) -> None:
    if fd is not None:
        os.close(fd)


def _rollback(root: Path, journal: dict[str, Any]) -> list[str]:
    """Return every file named in ``journal`` to its recorded "before" state (idempotent).

    Returns:
        The paths that had to be restored.
    """
    work = root / WORK_DIR
    restored = []
    for i, (rel, entry) in enumerate(journal["files"].items()):
        _fault("rollback", i)
        dst = root / rel
        if entry["before"] is None:
            if dst.is_file() or dst.is_symlink():
                dst.unlink()
                restored.append(rel)
            for d in entry.get("new_dirs", []):  # deepest first; only if still empty
                try:
                    (root / d).rmdir()
                except OSError:
                    pass
        elif _digest(dst) != entry["before"]:
            if dst.is_dir() and not dst.is_symlink():
                raise PatchError(f"cannot restore {dst}: a folder is in its place")
            dst.parent.mkdir(parents=True, exist_ok=True)
            _replace_file(work / "backup" / rel, dst, work)
            restored.append(rel)
    return restored


def _digest(path: Path) -> str | None:
    try:
        return sha256(path)
    except (IsADirectoryError, PermissionError):
        return "?"


def recover(path: str | os.PathLike) -> str | None:
    """Finish what an interrupted ``apply`` / ``revert`` at ``path`` left behind.

    A run that was killed after writing its journal (i.e. while swapping files) is rolled back:
    every file it touched returns to its state before that run, byte for byte. A run killed
    earlier only left its stage, which is removed. Both ``apply`` and ``revert`` call this first.

    Returns:
        A one-line message when something was recovered, else ``None``.

    Raises:
        PatchError: the journal is unreadable or a file cannot be restored (the journal stays,
            so a later call can try again).
    """
    root = Path(path)
    work = root / WORK_DIR
    if not work.is_dir():
        return None
    journal_path = work / _JOURNAL
    message = None
    if journal_path.is_file():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
            files = journal["files"]
            if not isinstance(files, dict):
                raise TypeError("files is not a mapping")
        except (ValueError, KeyError, TypeError) as exc:
            raise PatchError(f"the journal {journal_path} of an interrupted run is unreadable ({exc}); restore the "
                             f"series' files from {work / 'backup'} or with git, then remove {work}") from None
        try:
            restored = _rollback(root, journal)
        except OSError as exc:
            raise PatchError(f"rolling back the interrupted {journal.get('action', 'run')} at {root} failed "
                             f"({exc}); the journal is kept in {work}, fix the cause and run again") from None
        journal_path.unlink()
        message = (f"rolled back an interrupted {journal.get('action', 'run')} of {journal.get('series', '?')} "
                   f"({len(restored)} file(s) restored)")
    shutil.rmtree(work, ignore_errors=True)
    return message


def _sweep_stale_stages() -> None:
    """Remove ``nda-patch-<pid>-*`` stages in the temporary folder whose process is gone.

    Only ``check`` stages there (``apply``/``revert`` stage inside the checkout); one killed
    mid-check is removed by the next call.
    """
    for old in Path(tempfile.gettempdir()).glob("nda-patch-*-*"):
        pid = old.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _run_in_stage(series: Series, root: Path, *, reverse: bool, stage: Path | None = None) -> Path:
    """Copy the touched files to a stage folder and apply (or reverse) every patch there.

    Args:
        stage: an empty folder to use; default: a new temporary folder.

    Returns:
        The stage folder (caller removes it).

    Raises:
        PatchError: a patch does not apply; the message names it and quotes git.
    """
    if stage is None:
        _sweep_stale_stages()
        stage = Path(tempfile.mkdtemp(prefix=f"nda-patch-{os.getpid()}-"))
    for rel in series.files:
        src = root / rel
        if src.is_file():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, stage / rel)
    # Keep git from treating the stage as part of some enclosing repository.
    env = dict(os.environ, LC_ALL="C", GIT_CEILING_DIRECTORIES=str(stage.parent))
    order = list(reversed(series.patches)) if reverse else list(series.patches)
    for patch in order:
        for extra in (["--check"], []):
            args = ["git", "apply", *(["-R"] if reverse else []), *extra, str(patch)]
            proc = subprocess.run(args, cwd=stage, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                shutil.rmtree(stage, ignore_errors=True)
                verb = "revert" if reverse else "apply"
                raise PatchError(f"{patch.name} does not {verb} cleanly: {proc.stderr.strip() or proc.stdout.strip()}")
    return stage


def _verify_stage(series: Series, stage: Path, key: str) -> None:
    wrong = [rel for rel, h in series.files.items() if sha256(stage / rel) != h.get(key)]
    if wrong:
        raise PatchError(f"after the dry run, {wrong} do not match the recorded {key} hashes in upstream.json")


def _commit_stage(series: Series, stage: Path, root: Path, *, action: str = "apply") -> None:
    """Replace the checkout's files with the stage's, all or none.

    Backups of every touched file go to ``root/.nda-patch/backup`` and a journal is flushed to
    disk before the first file is replaced; the journal is removed after the last. A failure in
    between rolls back at once; a kill in between is rolled back by the next :func:`recover`.

    Raises:
        PatchError: a file could not be replaced; the message says whether the rollback worked.
    """
    work = root / WORK_DIR
    backup = work / "backup"
    journal: dict[str, Any] = {"series": series.name, "action": action, "files": {}}
    try:
        for rel in series.files:
            dst = root / rel
            entry: dict[str, Any] = {"before": sha256(dst) if dst.is_file() else None}
            if entry["before"] is not None:
                (backup / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dst, backup / rel)
                with open(backup / rel, "rb") as fh:
                    os.fsync(fh.fileno())
            else:
                new_dirs = []
                parent = Path(rel).parent
                while str(parent) not in ("", ".") and not (root / parent).exists():
                    new_dirs.append(parent.as_posix())
                    parent = parent.parent
                entry["new_dirs"] = new_dirs
            journal["files"][rel] = entry
        _fault("journal")
        _fsync_write(work / _JOURNAL, json.dumps(journal).encode())
    except OSError as exc:
        (work / _JOURNAL).unlink(missing_ok=True)
        raise PatchError(f"preparing the backups in {work} failed ({exc}); nothing in {root} was changed") from None
    try:
        for i, rel in enumerate(series.files):
            _fault("swap", i)
            src, dst = stage / rel, root / rel
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                _replace_file(src, dst, work)
            elif dst.exists():
                dst.unlink()
        _fault("swap", len(series.files))
    except (OSError, PatchError) as exc:
        try:
            _rollback(root, journal)
        except (OSError, PatchError) as exc2:
            raise PatchError(
                f"replacing {rel} failed ({exc}) and rolling back failed too ({exc2}); the journal is kept in "
                f"{work}: fix the cause and run `nda patch {action}` again to finish the rollback") from None
        (work / _JOURNAL).unlink()
        raise PatchError(f"replacing {rel} failed ({exc}); rolled back, {root} is unchanged") from None
    (work / _JOURNAL).unlink()


def _clone_hint(series: Series) -> str:
    """How to get the pinned checkout of ``series``, in one sentence."""
    repo = series.meta.get("repo", series.name)
    where = f" (the series patches its {series.subdir}/ folder)" if series.subdir else ""
    return f"get one with `git clone {repo}` and `git checkout {series.commit}`{where}"


def _refuse_unless(st: dict[str, Any], series: Series, allowed: str, allow_dirty: bool) -> None:
    if st["state"] == NOT_CHECKOUT:
        raise PatchError(
            f"{st['root']} is not a checkout of {series.name}: none of the files its series patches exist "
            f"({', '.join(f for f, s in st['files'].items() if s == 'missing')}); {_clone_hint(series)}.")
    if st["state"] == MODIFIED:
        missing = [f for f, s in st["files"].items() if s == "missing"]
        differ = [f for f, s in st["files"].items() if s == "unknown"]
        parts = ([f"{', '.join(differ)} differ from both the pinned upstream and the patched result"] if differ else []) \
            + ([f"{', '.join(missing)} missing"] if missing else [])
        if st["commit_matches"]:
            changed = ([f"{', '.join(differ)} changed outside this series"] if differ else []) \
                + ([f"{', '.join(missing)} missing"] if missing else [])
            raise PatchError(
                f"{st['root']} is at the pinned commit {series.commit[:7]} but {'; '.join(changed)}; restore "
                "them (git checkout -- <file>) and try again.")
        where = f" (HEAD {st['git']['commit'][:7]}, pinned {series.commit[:7]})" if st["git"] and st["git"]["commit"] else ""
        raise PatchError(
            f"{st['root']} is not a known {series.name} checkout{where}: {'; '.join(parts)}. Use a clean "
            f"checkout: {_clone_hint(series)}.")
    if st["state"] == PARTIAL:
        done = [f for f, s in st["files"].items() if s == "patched"]
        raise PatchError(
            f"{st['root']} is partially patched ({', '.join(done)} patched, the rest pristine); restore those "
            "files (e.g. `git checkout -- <file>`) and apply again.")
    if st["dirty"] and not allow_dirty:
        raise PatchError(
            f"{st['root']} has local changes in tracked files: {', '.join(st['dirty'])}. Commit or stash them, "
            "or pass --allow-dirty if the series does not touch them.")
    if st["state"] != allowed:  # pragma: no cover - callers handle the other states first
        raise PatchError(f"{st['root']} is {st['state']}, expected {allowed}")


def check(name: str, path: str | os.PathLike) -> dict[str, Any]:
    """Dry run: would ``apply`` (or ``revert``) succeed? Changes nothing.

    Returns:
        :func:`status`'s dict plus ``"ok"`` (bool) and ``"action"`` (``"apply"``,
        ``"revert"`` or ``None``) and, when not ok, ``"error"``.
    """
    series = get_series(name)
    report = status(path, series.name)
    root = Path(report["root"])
    st = series_state(series, Path(path))
    action = "revert" if st["state"] == APPLIED else "apply"
    try:
        journal = root / WORK_DIR / _JOURNAL
        if journal.is_file():
            raise PatchError(f"an interrupted `nda patch` run left its journal in {journal.parent}; "
                             "`nda patch apply` or `nda patch revert` rolls it back first")
        _refuse_unless(st, series, st["state"] if st["state"] in (PRISTINE, APPLIED) else PRISTINE, allow_dirty=True)
        stage = _run_in_stage(series, root, reverse=(action == "revert"))
        _fault("check")
        try:
            _verify_stage(series, stage, "pristine" if action == "revert" else "patched")
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    except PatchError as exc:
        return dict(report, ok=False, action=None, error=str(exc))
    return dict(report, ok=True, action=action)


def _staged_swap(series: "Series", root: Path, *, reverse: bool, expect: str) -> None:
    """Run the series on a staged copy, check the result's hashes, then swap the files in.

    The stage lives in ``root/.nda-patch`` (not the temporary folder), so that a killed run leaves
    nothing outside the checkout and the next call removes or rolls back what it left.
    """
    work = root / WORK_DIR
    try:
        work.mkdir()
    except OSError as exc:
        raise PatchError(f"cannot create the work folder {work}: {exc}") from None
    try:
        stage = _run_in_stage(series, root, reverse=reverse, stage=work / "stage")
        _fault("stage")
        _verify_stage(series, stage, expect)
        _commit_stage(series, stage, root, action="revert" if reverse else "apply")
    finally:
        if not (work / _JOURNAL).exists():  # a journal left here means a rollback is still owed
            shutil.rmtree(work, ignore_errors=True)


def _locked_swap(name: str, path: str | os.PathLike, *, reverse: bool, allow_dirty: bool):
    """Recover, then apply (or revert) under the checkout's lock unless it is already done.

    Returns:
        ``(series, state, note, done_before)``: ``state`` is the tree's state before the swap,
        ``note`` a recovery note (``""`` or ``" (...)"``), ``done_before`` true when nothing
        was left to do.
    """
    series = get_series(name)
    root = _root_for(series, Path(path))
    done, start = (PRISTINE, APPLIED) if reverse else (APPLIED, PRISTINE)
    lock = _lock(root)
    try:
        note = recover(root)
        note = f" ({note})" if note else ""
        st = series_state(series, Path(path))
        if st["state"] == done:
            return series, st, note, True
        _refuse_unless(st, series, start, allow_dirty)
        _staged_swap(series, root, reverse=reverse, expect="pristine" if reverse else "patched")
    finally:
        _unlock(lock)
    return series, st, note, False


def apply(name: str, path: str | os.PathLike, *, allow_dirty: bool = False) -> str:
    """Apply a series to a checkout; atomic and idempotent.

    Returns:
        A one-line message (``"... already applied"`` when it was).

    Raises:
        PatchError: unknown / modified / partially patched / dirty tree, or a patch that does
            not apply. The checkout is unchanged.
    """
    series, st, note, done = _locked_swap(name, path, reverse=False, allow_dirty=allow_dirty)
    n = len(series.patches)
    if done:
        return f"{series.name}: already applied to {st['root']} ({n} patches){note}"
    return f"{series.name}: applied {n} patches to {st['root']}{note}"


def revert(name: str, path: str | os.PathLike) -> str:
    """Revert a series; the touched files return to their pinned contents byte for byte.

    Raises:
        PatchError: as :func:`apply`; reverting a pristine tree only says so.
    """
    # Other local changes do not block a revert: it only restores the series' own files.
    series, st, note, done = _locked_swap(name, path, reverse=True, allow_dirty=True)
    n = len(series.patches)
    if done:
        return f"{series.name}: not applied to {st['root']}; nothing to revert{note}"
    return f"{series.name}: reverted {n} patches in {st['root']}{note}"


__all__ = [
    "APPLIED", "MODIFIED", "NOT_CHECKOUT", "PARTIAL", "PRISTINE", "PATCHES_ROOT", "PatchError", "Series", "apply",
    "available", "check", "fused_ops", "get_series", "identify", "load_series", "parse_series", "recover", "revert",
    "series_state", "sha256", "status", "touched_files",
]
