"""Maintainer tool: regenerate a series from a git clone with the patches as commits.

    python -m nda_plugins.patches.refresh NAME CLONE [--subdir DIR] [--base REV]

``CLONE`` is a git clone whose ``HEAD`` is the pinned commit (``upstream.json``'s ``commit``)
plus one commit per patch, in order, made in ``CLONE/DIR``. The tool rewrites
``<NAME>/NNNN-*.patch`` with ``git format-patch`` (3 lines of context, relative to ``DIR``) and
``upstream.json``'s ``files`` hashes (pristine = the pinned commit, patched = ``HEAD``). The
``series`` file is kept: its comments are written by hand; it must list the new file names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from . import ROOT


def _git(clone: Path, *args: str, binary: bool = False):
    out = subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True)
    return out.stdout if binary else out.stdout.decode()


def refresh(name: str, clone: Path, subdir: str = "", base: str | None = None) -> list[str]:
    folder = ROOT / name
    meta = json.loads((folder / "upstream.json").read_text(encoding="utf-8"))
    base = base or meta["commit"]
    for old in folder.glob("*.patch"):
        old.unlink()
    rel = ["--relative=" + subdir] if subdir else []
    _git(clone, "format-patch", "-q", "--no-signature", "--zero-commit", "-U3", *rel, "-o", str(folder), f"{base}..HEAD")
    files = {}
    prefix = (subdir.rstrip("/") + "/") if subdir else ""
    changed = _git(clone, "diff", "--name-only", f"{base}..HEAD", "--", subdir or ".").split()
    for path in changed:
        short = path[len(prefix):]
        def digest(rev):
            try:
                return hashlib.sha256(_git(clone, "show", f"{rev}:{path}", binary=True)).hexdigest()
            except subprocess.CalledProcessError:
                return None
        files[short] = {"pristine": digest(base), "patched": digest("HEAD")}
    meta["files"] = dict(sorted(files.items()))
    (folder / "upstream.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return sorted(p.name for p in folder.glob("*.patch"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("clone", type=Path)
    parser.add_argument("--subdir", default="")
    parser.add_argument("--base", default=None,
                        help="commit the patches start from, when the clone holds the pinned tree under "
                             "another commit (e.g. a subfolder imported on its own); default: upstream.json")
    args = parser.parse_args(argv)
    for name in refresh(args.name, args.clone, args.subdir, args.base):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
