"""Pictures people look at: contact sheets of faces, as PNG bytes or Markdown for Dagster."""

from __future__ import annotations

import base64
from typing import Sequence

import numpy as np
from PIL import Image

from fer_data.images import encode_png


def contact_sheet(images: Sequence[np.ndarray], columns: int = 12, cell: int = 48,
                  pad: int = 2) -> np.ndarray:
    """Gray images tiled row by row on a white background, each resized to `cell` pixels."""
    if not images:
        return np.full((cell, cell), 255, np.uint8)
    rows = (len(images) + columns - 1) // columns
    step = cell + pad
    sheet = np.full((rows * step + pad, min(columns, len(images)) * step + pad), 255, np.uint8)
    for i, image in enumerate(images):
        tile = Image.fromarray(image).convert("L").resize((cell, cell), Image.Resampling.BILINEAR)
        r, c = divmod(i, columns)
        sheet[pad + r * step: pad + r * step + cell, pad + c * step: pad + c * step + cell] = tile
    return sheet


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown that embeds a PNG inline (Dagster renders data URIs in md metadata)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def sheet_markdown(images: Sequence[np.ndarray], alt: str, **kwargs) -> str:
    return markdown_image(encode_png(contact_sheet(images, **kwargs)), alt)
