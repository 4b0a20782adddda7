"""The PNG files the app returns: lossless, with the parameters that made the image inside."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# zlib settings for the PNGs the app returns (lossless whatever they are): level 1 with zlib's
# run-length strategy, the one zlib's docs suggest for PNG data, gives near the size of Pillow's
# default (level 6) at level 1's speed; the default would add ~4% to an sd-turbo image on a CPU
# (`python -m benchmarks.cpu_bounds --parts png` measures the three).
PNG_COMPRESS_LEVEL = 1
PNG_ZLIB_STRATEGY = zlib.Z_RLE


def save_png(image: Image.Image, path: str | Path, metadata: dict) -> Path:
    """Save with the generation parameters as PNG text, so a saved image remembers how it was made."""
    info = PngInfo()
    info.add_text("parameters", json.dumps(metadata, sort_keys=True))
    path = Path(path)
    image.save(path, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_ZLIB_STRATEGY)
    return path
