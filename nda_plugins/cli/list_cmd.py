"""``nda list``: what is installed -- plugins, transforms, schedules, adapters, patch series."""

from __future__ import annotations

import inspect
import json
import os
import pkgutil

import click

SECTIONS = ("plugins", "transforms", "schedules", "adapters", "patches")


def _entry_points() -> dict[str, object]:
    from importlib.metadata import entry_points

    from .._manager import ENTRY_POINT_GROUP

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def plugins(pm) -> list[dict]:
    """One row per registered plugin: name, where it comes from, the hooks it implements."""
    from ..plugins import BUILTIN_PLUGINS

    builtin = {name for name, _ in BUILTIN_PLUGINS}
    eps = _entry_points()
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        if name in builtin:
            source = "built-in"
        elif name in eps:
            ep = eps[name]
            dist = getattr(ep, "dist", None)
            where = f" from {dist.name} {dist.version}" if dist is not None else ""
            source = f"entry point {ep.value}{where}"
        else:
            source = "registered in code"
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "source": source, "hooks": hooks})
    return rows


def transforms(pm) -> list[dict]:
    from .. import transforms as _transforms

    reg = _transforms.registry(pm)
    return [{"name": name, "plugin": reg.owner(name), "options": factory_options(reg.factory(name))}
            for name in reg.names()]


def factory_options(factory) -> list[dict]:
    """The keyword options of a registry factory: ``[{"name", "required", "default"}]``.

    Read from its signature; ``default`` is the ``repr`` of the default (``None`` when required).
    A factory whose signature cannot be read lists no options.
    """
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    rows = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        required = p.default is p.empty
        rows.append({"name": p.name, "required": required, "default": None if required else repr(p.default)})
    return rows


def schedules(pm) -> list[dict]:
    """One row per schedule: its options (from the factory's signature), a spec that builds, and
    the first line of its docstring."""
    from .. import schedules as _schedules

    reg = _schedules.registry(pm)
    rows = []
    for name in reg.names():
        factory = reg.factory(name)
        doc = (inspect.getdoc(factory) or "").strip().splitlines()
        rows.append({
            "name": name,
            "plugin": reg.owner(name),
            "options": factory_options(factory),
            "example": getattr(factory, "example", None),
            "doc": doc[0].replace("``", "") if doc else "",
        })
    return rows


def _options_text(options: list[dict]) -> str:
    return ", ".join(o["name"] + ("*" if o["required"] else f"={o['default']}") for o in options) or "-"


def adapters() -> list[dict]:
    """Sub-packages of :mod:`nda_plugins.adapters` (one per upstream)."""
    try:
        import nda_plugins.adapters as pkg
    except ImportError as exc:  # pragma: no cover - broken install
        return [{"name": f"<nda_plugins.adapters not importable: {exc}>", "path": ""}]
    return [
        {"name": info.name, "path": os.path.join(next(iter(pkg.__path__)), info.name)}
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name)
        if info.ispkg
    ]


def patches() -> list[dict]:
    """Patch series shipped in :mod:`nda_plugins.patches`, with their patch counts."""
    try:
        from nda_plugins.patches import series_dirs
    except ImportError as exc:  # pragma: no cover - broken install
        return [{"name": f"<nda_plugins.patches not importable: {exc}>", "path": "", "patches": 0}]
    return [
        {"name": name, "path": str(path), "patches": len(sorted(path.glob("*.patch")))}
        for name, path in series_dirs().items()
    ]


def gather(sections=SECTIONS) -> dict[str, list[dict]]:
    from .._manager import get_plugin_manager

    pm = get_plugin_manager()
    table = {
        "plugins": lambda: plugins(pm),
        "transforms": lambda: transforms(pm),
        "schedules": lambda: schedules(pm),
        "adapters": adapters,
        "patches": patches,
    }
    return {name: table[name]() for name in sections}


@click.command(name="list")
@click.argument("sections", nargs=-1, type=click.Choice(SECTIONS), metavar="[SECTION]...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def list_cmd(sections: tuple[str, ...], as_json: bool) -> None:
    """List plugins, transforms, schedules, adapters and patch series.

    Give SECTIONS (any of plugins, transforms, schedules, adapters, patches) to list only those.
    Plugins come from the built-ins and the ``nda_plugins`` entry-point group; set
    NDA_PLUGINS_DISABLE_AUTOLOAD=1 to skip entry points.
    """
    data = gather(sections or SECTIONS)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for section, rows in data.items():
        click.echo(f"{section}:")
        if not rows:
            click.echo("  (none)")
        for row in rows:
            if section == "plugins":
                click.echo(f"  {row['name']:34} {row['source']}")
                click.echo(f"  {'':34} hooks: {', '.join(row['hooks']) or '-'}")
            elif section == "transforms":
                click.echo(f"  {row['name']:14} from {row['plugin']}; options (* required): {_options_text(row['options'])}")
            elif section == "patches":
                click.echo(f"  {row['name']:28} {row['patches']} patch(es)  {row['path']}")
            elif section == "adapters":
                click.echo(f"  {row['name']:28} {row['path']}")
            elif section == "schedules":
                click.echo(f"  {row['name']:14} options (* required): {_options_text(row['options'])}")
                if row["doc"]:
                    click.echo(f"  {'':14} {row['doc']}")
                if row["example"]:
                    click.echo(f"  {'':14} e.g. {row['example']}")
            else:
                click.echo(f"  {row['name']}")
