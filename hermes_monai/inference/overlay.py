"""A picture of one result for a person: the image, the lesion contour, and the class with its probability.

:func:`overlay_image` draws, on the grey image as RGB, the one-pixel outline of the mask (pixels of
the mask with a background 4-neighbour) in yellow, and a caption band at the top, e.g.
``malignant 0.87``. :func:`write_overlay` saves it as PNG (atomic write).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw

from hermes_monai.io.atomic import atomic_path

__all__ = ["mask_outline", "overlay_image", "write_overlay"]

CONTOUR_RGB = (255, 220, 0)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Boolean (H, W): mask pixels with at least one 4-neighbour outside the mask (or the image)."""
    m = np.asarray(mask) > 0
    padded = np.pad(m, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~inner


def overlay_image(image: np.ndarray, mask: np.ndarray, caption: str) -> Image.Image:
    """RGB picture of ``image`` (H, W) in [0, 1] with the outline of ``mask`` (H, W) and ``caption``."""
    grey = (np.clip(np.asarray(image, dtype=np.float64), 0, 1) * 255).round().astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    outline = mask_outline(mask)
    if max(outline.shape) >= 256:  # thicken the line on large images so that it stays visible
        o = np.pad(outline, 1)
        outline = o[1:-1, 1:-1] | o[:-2, 1:-1] | o[2:, 1:-1] | o[1:-1, :-2] | o[1:-1, 2:]
    rgb[outline] = CONTOUR_RGB
    pic = Image.fromarray(rgb)
    draw = ImageDraw.Draw(pic)
    left, top, right, bottom = draw.textbbox((0, 0), caption)
    draw.rectangle((0, 0, right - left + 6, bottom - top + 6), fill=(0, 0, 0))
    draw.text((3 - left, 3 - top), caption, fill=(255, 255, 255))
    return pic


def write_overlay(path: str | os.PathLike, image: np.ndarray, mask: np.ndarray, caption: str) -> None:
    """Save :func:`overlay_image` as a PNG file at ``path``."""
    pic = overlay_image(image, mask, caption)
    with atomic_path(path) as tmp:
        pic.save(tmp, format="PNG")
