"""A labelled matrix heat map drawn with Pillow (confusion matrices and the like)."""

from __future__ import annotations

import numpy as np

from .errors import UsageError

_BG, _FG = (255, 255, 255), (30, 30, 30)


def _colour(t: float) -> tuple[int, int, int]:
    """White (0) to deep blue (1)."""
    return (int(round(255 - 225 * t)), int(round(255 - 165 * t)), int(round(255 - 75 * t)))


def heatmap(matrix, row_labels, col_labels, *, title: str = "", xlabel: str = "", ylabel: str = "",
            cell: int = 36, normalize_rows: bool = False):
    """A PIL image of `matrix` with each cell's value written in it and the labels along the axes.

    Colours follow the value (or, with `normalize_rows`, the value's share of its row, which suits a
    confusion matrix with unequal class sizes); integer matrices print as integers.
    """
    from PIL import Image, ImageDraw, ImageFont

    m = np.asarray(matrix)
    if m.ndim != 2 or m.size == 0 or not np.issubdtype(m.dtype, np.number):
        raise UsageError(f"heatmap needs a non-empty numeric 2-d matrix, got {m.dtype} {m.shape}")
    if len(row_labels) != m.shape[0] or len(col_labels) != m.shape[1]:
        raise UsageError(f"{len(row_labels)} row and {len(col_labels)} column labels for a {m.shape} matrix")
    values = m.astype(np.float64)
    if normalize_rows:
        sums = values.sum(axis=1, keepdims=True)
        shade = np.divide(values, sums, out=np.zeros_like(values), where=sums > 0)
    else:
        top = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 0
        shade = np.abs(values) / top if top > 0 else np.zeros_like(values)
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max(probe.textlength(str(s), font=font) for s in row_labels)) + 10 + (14 if ylabel else 0)
    # Cells wide enough for the column names, so none is cut short.
    cell = max(cell, int(max(probe.textlength(str(s), font=font) for s in col_labels)) + 6)
    top_margin = 10 + (16 if title else 0) + (14 if xlabel else 0) + 14
    rows, cols = m.shape
    img = Image.new("RGB", (left + cols * cell + 10, top_margin + rows * cell + 10), _BG)
    draw = ImageDraw.Draw(img)
    if title:
        draw.text((left, 6), title, fill=_FG, font=font)
    if xlabel:
        draw.text((left, top_margin - 28), xlabel, fill=_FG, font=font)
    for j, name in enumerate(col_labels):
        text = _fit(draw, str(name), cell - 2, font)
        draw.text((left + j * cell + (cell - draw.textlength(text, font=font)) / 2, top_margin - 14), text,
                  fill=_FG, font=font)
    for i, name in enumerate(row_labels):
        y = top_margin + i * cell
        draw.text((left - 6 - draw.textlength(str(name), font=font), y + cell / 2 - 5), str(name), fill=_FG, font=font)
        for j in range(cols):
            x = left + j * cell
            t = float(np.clip(shade[i, j], 0, 1)) if np.isfinite(shade[i, j]) else 0.0
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=_colour(t), outline=(200, 200, 200))
            v = m[i, j]
            text = str(int(v)) if np.issubdtype(m.dtype, np.integer) else f"{float(v):.2f}"
            text = _fit(draw, text, cell - 2, font)
            ink = (255, 255, 255) if t > 0.55 else _FG
            draw.text((x + (cell - draw.textlength(text, font=font)) / 2, y + cell / 2 - 5), text, fill=ink, font=font)
    if ylabel:
        label = Image.new("RGB", (int(draw.textlength(ylabel, font=font)) + 4, 12), _BG)
        ImageDraw.Draw(label).text((2, 0), ylabel, fill=_FG, font=font)
        rotated = label.rotate(90, expand=True)
        img.paste(rotated, (2, top_margin + max(0, (rows * cell - rotated.height) // 2)))
    return img


def _fit(draw, text: str, width: int, font) -> str:
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-1]
    return text
