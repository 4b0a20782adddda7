"""The initial image of an image-to-image request: read safely, converted as users expect.

Any file Pillow reads, in any mode (RGBA and palette transparency over white, grayscale, CMYK,
16-bit), turned upright by its EXIF orientation, then made exactly the requested size keeping
its aspect ratio: `crop` fills the size and cuts what overflows (the default), `pad` keeps all of
it and fills the rest with white. Its size is checked from the header, before it is decoded: a
decompression bomb (a small file that decodes to a huge image) never reaches memory.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pipelines.core.errors import InputError
from pipelines.core.files import read_regular_file

FITS = ("crop", "pad")
BACKGROUND = (255, 255, 255)  # what transparency and padding become
# Largest initial image file read (limits.max_init_image_mb's default): a 4096 x 4096 photo is
# at most ~50 MB even as an uncompressed PNG.
DEFAULT_MAX_BYTES = 64 * 2**20


@dataclass(frozen=True)
class InitImage:
    image: Image.Image  # RGB, exactly the requested width x height
    path: str  # the file it came from (remote backends send it on)
    sha256: str  # of the file's bytes: a result can be traced to its input
    original_size: tuple[int, int]
    fit: str

    def metadata(self) -> dict:
        return {"sha256": self.sha256, "original_size": list(self.original_size), "fit": self.fit}


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit) grayscale: scale to 8 bits
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")  # palette transparency becomes an alpha channel
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, BACKGROUND)
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")  # L, CMYK, YCbCr, RGB


def load_init_image(
    path: str | Path,
    width: int,
    height: int,
    fit: str,
    max_pixels: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limit_name: str = "limits.max_init_image_mb",
) -> InitImage:
    """The image at `path` as an RGB image of width x height; InputError("init_image", ...) for a
    file that is not a regular file, is over `max_bytes` (the setting `limit_name`), is not an
    image, is truncated, or has more than `max_pixels` pixels."""
    path = Path(path)
    if fit not in FITS:
        raise InputError("init_fit", f"must be one of {', '.join(FITS)}, got {fit!r}")
    # Bounded, and from these bytes only: the path is never opened a second time.
    data = read_regular_file(path, "init_image", max_bytes, limit_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "error", Image.DecompressionBombWarning
            )  # over Pillow's own limit: refuse, don't warn
            opened = Image.open(io.BytesIO(data))  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise InputError(
            "init_image",
            f"decodes to more pixels than allowed ({err}); the limit is {max_pixels:,} "
            "pixels (limits.max_init_image_pixels)",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(
            "init_image", f"{path.name!r} is not an image file that can be read (PNG, JPEG, WebP, ...)"
        ) from None
    with opened:
        pixels = opened.width * opened.height
        if pixels > max_pixels:
            raise InputError(
                "init_image",
                f"is {opened.width} x {opened.height} = {pixels:,} pixels; the limit is "
                f"{max_pixels:,} pixels (limits.max_init_image_pixels)",
            )
        try:
            opened.load()
        except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt image data
            raise InputError("init_image", f"{path.name!r} is damaged or truncated ({err})") from None
        original_size = opened.size
        upright = ImageOps.exif_transpose(opened)
        rgb = _to_rgb(upright)
    if fit == "crop":
        sized = ImageOps.fit(rgb, (width, height), Image.Resampling.LANCZOS)
    else:
        sized = ImageOps.pad(rgb, (width, height), Image.Resampling.LANCZOS, color=BACKGROUND)
    return InitImage(sized, str(path), hashlib.sha256(data).hexdigest(), original_size, fit)
