"""A tiny PNG encoder and decoder (zlib + struct), so previews need no imaging library.

Only what ``nda preview`` needs: 8-bit grayscale, RGB and RGBA, non-interlaced. The encoder writes
filter type 0 (none) on every row; the decoder understands all five PNG row filters, so it reads
files written by other tools too (pillow, ImageMagick, browsers). Palette, 16-bit and interlaced
files raise a clear :class:`ValueError`; use pillow for those.

Example:
    >>> import torch
    >>> from nda_plugins._png import encode_png, decode_png
    >>> img = torch.zeros(4, 5, 3, dtype=torch.uint8)
    >>> decode_png(encode_png(img)).shape
    torch.Size([4, 5, 3])
"""

from __future__ import annotations

import struct
import zlib
from os import PathLike

import torch

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types for 8-bit images, by channel count, and back.
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
_CHANNELS = {v: k for k, v in _COLOR_TYPE.items()}


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: torch.Tensor, *, text: dict[str, str] | None = None, level: int = 6) -> bytes:
    """Encode an image as PNG bytes.

    Args:
        pixels: ``(H, W)`` or ``(H, W, C)`` tensor of dtype ``uint8`` with ``C`` in 1..4
            (gray, gray+alpha, RGB, RGBA). Any device; it is copied to the CPU.
        text: optional ``tEXt`` metadata (Latin-1 keys of 1-79 characters).
        level: zlib compression level, 0-9.

    Returns:
        The PNG file as ``bytes``.

    Raises:
        TypeError: ``pixels`` is not a uint8 tensor.
        ValueError: wrong rank, channel count or an empty image.
    """
    if not isinstance(pixels, torch.Tensor):
        raise TypeError(f"pixels: expected a torch.Tensor, got {type(pixels).__name__}")
    if pixels.dtype != torch.uint8:
        raise TypeError(f"pixels: expected dtype torch.uint8, got {pixels.dtype}")
    if pixels.dim() == 2:
        pixels = pixels.unsqueeze(-1)
    if pixels.dim() != 3 or pixels.shape[-1] not in _COLOR_TYPE:
        raise ValueError(
            f"pixels: expected shape (H, W) or (H, W, C) with C in 1..4, got {tuple(pixels.shape)}"
        )
    height, width, channels = pixels.shape
    if height == 0 or width == 0:
        raise ValueError(f"pixels: expected a non-empty image, got {tuple(pixels.shape)}")
    if not 0 <= level <= 9:
        raise ValueError(f"level: expected an int in [0, 9], got {level!r}")
    rows = pixels.detach().to("cpu").contiguous().reshape(height, width * channels)
    # Prefix every row with filter byte 0 ("none").
    raw = torch.cat([torch.zeros(height, 1, dtype=torch.uint8), rows], dim=1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    out = [_SIGNATURE, _chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        if not 1 <= len(key) <= 79:
            raise ValueError(f"text: keys must have 1-79 characters, got {key!r}")
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(raw.numpy().tobytes(), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def write_png(path: str | PathLike, pixels: torch.Tensor, *, text: dict[str, str] | None = None) -> None:
    """Write ``pixels`` (see :func:`encode_png`) to ``path``."""
    data = encode_png(pixels, text=text)
    with open(path, "wb") as fh:
        fh.write(data)


def read_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split PNG bytes into ``(kind, payload)`` chunks, checking the signature and every CRC."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("data: not a PNG file (bad signature)")
    chunks, pos = [], len(_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("data: truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        crc_bytes = data[pos + 8 + length : pos + 12 + length]
        if len(payload) != length or len(crc_bytes) != 4:
            raise ValueError(f"data: truncated PNG chunk {kind!r}")
        if zlib.crc32(kind + payload) & 0xFFFFFFFF != struct.unpack(">I", crc_bytes)[0]:
            raise ValueError(f"data: CRC mismatch in PNG chunk {kind!r}")
        chunks.append((kind, payload))
        pos += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    """Undo the per-row PNG filters (types 0-4). Not a hot path: used only to read previews."""
    out = bytearray(height * stride)
    prev = bytearray(stride)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise ValueError(f"data: unknown PNG filter type {ftype} in row {y}")
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return out


def decode_png(data: bytes) -> torch.Tensor:
    """Decode an 8-bit, non-interlaced gray / gray+alpha / RGB / RGBA PNG.

    Args:
        data: the PNG file's bytes.

    Returns:
        ``(H, W, C)`` uint8 tensor, ``C`` in 1..4.

    Raises:
        ValueError: not a PNG, corrupt, or a variant this decoder does not read (palette,
            16-bit, interlaced).
    """
    chunks = read_chunks(data)
    if not chunks or chunks[0][0] != b"IHDR":
        raise ValueError("data: PNG without a leading IHDR chunk")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if depth != 8 or color not in _CHANNELS or interlace != 0:
        raise ValueError(
            f"data: only 8-bit non-interlaced gray/RGB/RGBA PNGs are supported here "
            f"(got bit depth {depth}, colour type {color}, interlace {interlace}); install pillow"
        )
    channels = _CHANNELS[color]
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise ValueError(f"data: image data has {len(raw)} bytes, expected {height * (stride + 1)}")
    pixels = _unfilter(raw, height, stride, channels)
    return torch.frombuffer(pixels, dtype=torch.uint8).reshape(height, width, channels).clone()


def read_png(path: str | PathLike) -> torch.Tensor:
    """Read a PNG file with :func:`decode_png`."""
    with open(path, "rb") as fh:
        return decode_png(fh.read())
