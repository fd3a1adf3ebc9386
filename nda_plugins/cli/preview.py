"""``nda preview``: a PNG grid of source images and each transform's negatives.

Rows are source images; the first column is the source, then one column per transform. The
sources are the images of a folder or procedurally drawn images (gradients and shapes drawn
with torch from ``--seed``), so a user can *see* what the discriminator will be taught to reject.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

#: File suffixes read from ``--images`` (PNG without pillow; the others need pillow).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------


def procedural_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` distinct RGB images: a two-colour gradient plus discs, boxes and rings.

    Args:
        n: number of images.
        size: side length in pixels.
        generator: CPU generator; the same state draws the same images.

    Returns:
        ``(n, 3, size, size)`` float32 in ``[0, 1]``.
    """
    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (S, S)
    # Background: a linear gradient between two colours at a random angle.
    angle = rand(n, 1, 1) * 2 * torch.pi
    ramp = (xx * torch.cos(angle) + yy * torch.sin(angle))  # (n, S, S)
    ramp = (ramp - ramp.amin((1, 2), keepdim=True)) / (ramp.amax((1, 2), keepdim=True) - ramp.amin((1, 2), keepdim=True))
    c0, c1 = rand(n, 3, 1, 1), rand(n, 3, 1, 1)
    img = c0 + (c1 - c0) * ramp.unsqueeze(1)
    shapes = 4
    kind = torch.randint(0, 3, (n, shapes, 1, 1), generator=generator)
    cy, cx = rand(n, shapes, 1, 1), rand(n, shapes, 1, 1)
    radius = 0.08 + 0.17 * rand(n, shapes, 1, 1)
    color = rand(n, shapes, 3, 1, 1)
    dy, dx = yy - cy, xx - cx  # (n, k, S, S)
    dist = torch.sqrt(dy**2 + dx**2)
    disc = dist <= radius
    box = (dy.abs() <= radius) & (dx.abs() <= radius * 0.7)
    ring = (dist <= radius) & (dist >= radius * 0.6)
    mask = torch.where(kind == 0, disc, torch.where(kind == 1, box, ring))  # (n, k, S, S)
    for k in range(shapes):  # painter's order; k is a small constant, not the batch
        img = torch.where(mask[:, k : k + 1], color[:, k], img)
    return img.clamp(0, 1)


def _read_image(path: Path) -> torch.Tensor:
    """``(H, W, C)`` uint8 from a file: PNG with the built-in decoder, anything else with pillow."""
    from .._png import read_png

    if path.suffix.lower() == ".png":
        try:
            return read_png(path)
        except ValueError as png_error:  # palette / 16-bit / interlaced: let pillow try
            reason = str(png_error)
    else:
        reason = f"{path.suffix} files need pillow"
    try:
        from PIL import Image
    except ImportError:
        raise click.ClickException(
            f"cannot read {path}: {reason}. Install pillow (pip install pillow) or convert to 8-bit PNG"
        ) from None
    import numpy as np

    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB"), dtype=np.uint8))
    except (OSError, ValueError, SyntaxError) as exc:  # truncated, corrupt or not an image at all
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise click.BadParameter(f"cannot read the image {str(path)!r}: {detail}", param_hint="'--images'") from None


def _to_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """``(H, W, C)`` uint8 -> ``(3, size, size)`` float: centre crop, then resize (antialiased)."""
    x = img.permute(2, 0, 1).float() / 255.0
    if x.shape[0] in (1, 2):  # gray (+alpha)
        x = x[:1].expand(3, -1, -1)
    x = x[:3]
    h, w = x.shape[1:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[:, top : top + side, left : left + side]
    x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(0, 1)


def folder_images(folder: Path, n: int, size: int) -> tuple[torch.Tensor, list[Path]]:
    """The first ``n`` images of ``folder`` (sorted by name) as ``(n, 3, size, size)`` float."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise click.BadParameter(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}", param_hint="'--images'"
        )
    files = files[:n]
    return torch.stack([_to_square(_read_image(p), size) for p in files]), files


# ----------------------------------------------------------------------------------------
# Grid
# ----------------------------------------------------------------------------------------


def make_grid(columns: list[torch.Tensor], pad: int = 2, background: float = 1.0) -> torch.Tensor:
    """Lay out columns of images as one picture.

    Args:
        columns: ``T`` tensors ``(N, 3, S, S)`` float in ``[0, 1]``; column ``j`` row ``i`` is
            ``columns[j][i]``.
        pad: pixels between cells and around the grid.
        background: the padding's grey level.

    Returns:
        ``(H, W, 3)`` uint8 with ``H = N*S + (N+1)*pad`` and ``W = T*S + (T+1)*pad``.
    """
    stacked = torch.stack([c.float().clamp(0, 1) for c in columns], dim=1)  # (N, T, 3, S, S)
    n, t, _, s, _ = stacked.shape
    padded = torch.nn.functional.pad(stacked, (pad, 0, pad, 0), value=background)  # (N, T, 3, S+p, S+p)
    grid = padded.permute(2, 0, 3, 1, 4).reshape(3, n * (s + pad), t * (s + pad))
    grid = torch.nn.functional.pad(grid, (0, pad, 0, pad), value=background)
    return (grid * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


# ----------------------------------------------------------------------------------------
# Command
# ----------------------------------------------------------------------------------------


def split_specs(values: tuple[str, ...]) -> list[str]:
    """``("jigsaw:grid=3,stitch", "cutout")`` -> ``["jigsaw:grid=3", "stitch", "cutout"]``.

    A comma separates transforms, except that an item shaped ``key=value`` (no ``:`` before its
    ``=``) continues the previous spec's options: ``"cutmix:a=1,b=2,noise"``.
    """
    specs: list[str] = []
    for value in values:
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            eq, colon = item.find("="), item.find(":")
            if eq >= 0 and (colon < 0 or eq < colon) and specs and ":" in specs[-1]:
                specs[-1] += "," + item
            else:
                specs.append(item)
    return specs


def _default_specs() -> list[str]:
    from .. import transforms

    # "source" needs a user tensor; every other registered transform is shown.
    return [name for name in transforms.available() if name != "source"]


@click.command(name="preview")
@click.option(
    "--transforms", "-t", "transform_specs", multiple=True, metavar="SPECS",
    help="Comma-separated transform specs, e.g. 'jigsaw:grid=3,stitch,cutout' (repeatable). "
    "Default: every registered transform except 'source'.",
)
@click.option(
    "--images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
    help="A folder of images (PNG; other formats need pillow). Default: procedurally drawn images.",
)
@click.option("--n", "n", type=click.IntRange(1, 64), default=4, show_default=True, help="Number of source images (rows).")
@click.option("--size", type=click.IntRange(8, 1024), default=96, show_default=True, help="Side of each cell in pixels.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed for the drawn images and the transforms.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=Path("nda-preview.png"), show_default=True, help="Output PNG file.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def preview(transform_specs, images, n, size, seed, out, force):
    """Write a PNG grid: one row per source image, then that image's negative under each transform.

    \b
    Examples:
      nda preview
      nda preview --transforms jigsaw:grid=3,stitch --n 6 --size 128 --out neg.png
      nda preview --images ./my_faces --force
    """
    from .. import transforms
    from .._png import write_png

    if out.exists() and not force:
        raise click.BadParameter(f"{out} exists; pass --force to overwrite it", param_hint="'--out'")
    if not out.parent.exists():
        raise click.BadParameter(f"folder {out.parent} does not exist", param_hint="'--out'")
    if out.suffix.lower() != ".png":
        raise click.BadParameter(f"expected a .png file name, got {out.name!r}", param_hint="'--out'")

    specs = split_specs(transform_specs) if transform_specs else _default_specs()
    if not specs:
        raise click.BadParameter("no transform given", param_hint="'--transforms'")
    known = transforms.available()
    built = []
    for spec in specs:
        try:
            name, _ = transforms.parse_spec(spec)
            if name not in known:
                raise ValueError(f"unknown transform {name!r}; available: {', '.join(known)}")
            built.append(transforms.build(spec))
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(f"{spec!r}: {exc}", param_hint="'--transforms'") from None

    generator = torch.Generator().manual_seed(seed)
    if images is None:
        sources = procedural_images(n, size, generator)
        origin = f"{n} procedurally drawn images (seed {seed})"
    else:
        sources, files = folder_images(images, n, size)
        origin = f"{len(files)} image(s) from {images}"
    pairwise = [spec for spec, t in zip(specs, built) if getattr(t, "pairwise", False)]
    if pairwise and sources.shape[0] < 2:
        hint = "'--images'" if images is not None else "'--n'"
        given = f"the folder gave {sources.shape[0]} image" if images is not None else f"got --n {n}"
        raise click.BadParameter(
            f"{', '.join(map(repr, pairwise))} pair each image with another image of the batch, so they need at "
            f"least 2 source images; {given}. Use --n 2 or more"
            + (" and a folder with at least 2 images" if images is not None else "")
            + ", or leave them out of --transforms.", param_hint=hint)
    columns = [sources]
    for spec, t in zip(specs, built):
        try:
            columns.append(t(sources, generator=generator))
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(
                f"transform {spec!r} failed on {sources.shape[0]} image(s): {exc}", param_hint="'--transforms'"
            ) from None
    names = ["source", *specs]
    text = {"Title": "nda preview", "Columns": ", ".join(names), "Source": origin}
    from ..demo import _output

    stacked = torch.stack([c.float().clamp(0, 1) for c in columns], dim=1)  # (N, T, 3, S, S)
    labelled = _output.save_labelled_grid(
        out, stacked.flatten(0, 1) * 2 - 1, nrow=len(columns), col_labels=names,
        title=f"Each row: a source image, then its negative under each transform\n({origin})",
        metadata=text)
    if labelled:
        click.echo(f"wrote {out}: rows = {origin}; columns (labelled on the image) = {', '.join(names)}")
        return
    grid = make_grid(columns)
    write_png(out, grid, text=text)
    click.echo(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]} px): rows = {origin}; columns = {', '.join(names)}")
    click.echo("(no column labels on the image: matplotlib is not installed; "
               "pip install nda-plugins[demo] adds them)")
