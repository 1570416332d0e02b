"""Small Pillow charts: points, a mean line with error bars, axes with ticks, labels and a title.

Generic on purpose (cross-validation curves, learning curves, sweeps): give x positions, optional
scatter points per x, optional means and error half-widths, and get a PIL image back.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UsageError

_BG, _FG, _GRID = (255, 255, 255), (40, 40, 40), (225, 225, 225)
_POINT, _LINE = (70, 110, 200), (200, 60, 40)


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise UsageError("cannot place ticks on a non-finite range")
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


def _draw_labels(img, draw, font, title: str, xlabel: str, ylabel: str) -> None:
    """Title centred on top, x label centred at the bottom, y label rotated along the left edge."""
    from PIL import Image, ImageDraw

    w, h = img.size
    if title:
        draw.text(((w - draw.textlength(title, font=font)) / 2, 12), title, fill=_FG, font=font)
    if xlabel:
        draw.text(((w - draw.textlength(xlabel, font=font)) / 2, h - 22), xlabel, fill=_FG, font=font)
    if ylabel:
        label = Image.new("RGB", (int(draw.textlength(ylabel, font=font)) + 4, 14), _BG)
        ImageDraw.Draw(label).text((2, 0), ylabel, fill=_FG, font=font)
        rotated = label.rotate(90, expand=True)
        img.paste(rotated, (6, (h - rotated.height) // 2))


def errorbar_plot(x, points=None, mean=None, err=None, *, title: str = "", xlabel: str = "", ylabel: str = "",
                  size: tuple[int, int] = (640, 480)):
    """A PIL image: for each x, its `points` as dots, `mean` joined by a line, `mean +- err` as bars.

    x: sequence of n numbers; points: n sequences of values (any lengths) or None; mean, err: n
    numbers or None. At least one of points and mean is needed.
    """
    from PIL import Image, ImageDraw, ImageFont

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n == 0 or (points is None and mean is None):
        raise UsageError("errorbar_plot needs x values and points or means to draw")
    pts = [np.asarray(p, dtype=np.float64).ravel() for p in points] if points is not None else [np.empty(0)] * n
    mean = None if mean is None else np.asarray(mean, dtype=np.float64)
    err = np.zeros(n) if err is None else np.asarray(err, dtype=np.float64)
    if len(pts) != n or (mean is not None and len(mean) != n) or len(err) != n:
        raise UsageError("x, points, mean and err must have the same length")
    ys = [v for p in pts for v in p]
    if mean is not None:
        ys += list(mean - err) + list(mean + err)
    ys = [v for v in ys if math.isfinite(v)]
    if not ys:
        raise UsageError("nothing finite to plot")

    w, h = size
    img = Image.new("RGB", size, _BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 70, 20, 40, 55
    xt, yt = nice_ticks(float(x.min()), float(x.max())), nice_ticks(min(ys), max(ys))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(v):
        return left + (v - x0) / ((x1 - x0) or 1) * (w - left - right)

    def py(v):
        return h - bottom - (v - y0) / ((y1 - y0) or 1) * (h - top - bottom)

    for t in yt:
        draw.line([(left, py(t)), (w - right, py(t))], fill=_GRID)
        label = _fmt(t)
        draw.text((left - 8 - draw.textlength(label, font=font), py(t) - 6), label, fill=_FG, font=font)
    for t in xt:
        draw.line([(px(t), h - bottom), (px(t), h - bottom + 5)], fill=_FG)
        label = _fmt(t)
        draw.text((px(t) - draw.textlength(label, font=font) / 2, h - bottom + 8), label, fill=_FG, font=font)
    draw.rectangle([left, top, w - right, h - bottom], outline=_FG)

    for xi, p in zip(x, pts):
        for v in p:
            if math.isfinite(v):
                draw.ellipse([px(xi) - 3, py(v) - 3, px(xi) + 3, py(v) + 3], fill=_POINT)
    if mean is not None:
        line = [(px(xi), py(m)) for xi, m in zip(x, mean) if math.isfinite(m)]
        if len(line) > 1:
            draw.line(line, fill=_LINE, width=2)
        for xi, m, e in zip(x, mean, err):
            if math.isfinite(m) and math.isfinite(e) and e > 0:
                draw.line([(px(xi), py(m - e)), (px(xi), py(m + e))], fill=_LINE, width=2)
                for v in (m - e, m + e):
                    draw.line([(px(xi) - 5, py(v)), (px(xi) + 5, py(v))], fill=_LINE, width=2)

    _draw_labels(img, draw, font, title, xlabel, ylabel)
    return img


_SERIES = [(70, 110, 200), (200, 60, 40), (60, 150, 80), (150, 90, 170)]


def line_plot(series, *, title: str = "", xlabel: str = "", ylabel: str = "", size: tuple[int, int] = (640, 360),
              ylim: tuple[float, float] | None = None):
    """A PIL image of one or more lines: `series` is a list of (label, x, y); non-finite points are
    skipped, a series with a single point is drawn as a dot, and a legend names them (top right)."""
    from PIL import Image, ImageDraw, ImageFont

    data = []
    for label, x, y in series:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise UsageError(f"line_plot: series {label!r} has {len(x)} x values and {len(y)} y values")
        keep = np.isfinite(x) & np.isfinite(y)
        data.append((label, x[keep], y[keep]))
    xs = np.concatenate([d[1] for d in data]) if data else np.empty(0)
    ys = np.concatenate([d[2] for d in data]) if data else np.empty(0)
    if xs.size == 0:
        raise UsageError("nothing finite to plot")
    w, h = size
    img = Image.new("RGB", size, _BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 70, 20, 40, 55
    xt = nice_ticks(float(xs.min()), float(xs.max()))
    yt = nice_ticks(*(ylim if ylim else (float(ys.min()), float(ys.max()))))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(v):
        return left + (v - x0) / ((x1 - x0) or 1) * (w - left - right)

    def py(v):
        return h - bottom - (min(max(v, y0), y1) - y0) / ((y1 - y0) or 1) * (h - top - bottom)

    for t in yt:
        draw.line([(left, py(t)), (w - right, py(t))], fill=_GRID)
        draw.text((left - 8 - draw.textlength(_fmt(t), font=font), py(t) - 6), _fmt(t), fill=_FG, font=font)
    for t in xt:
        draw.line([(px(t), h - bottom), (px(t), h - bottom + 5)], fill=_FG)
        draw.text((px(t) - draw.textlength(_fmt(t), font=font) / 2, h - bottom + 8), _fmt(t), fill=_FG, font=font)
    draw.rectangle([left, top, w - right, h - bottom], outline=_FG)
    for k, (label, x, y) in enumerate(data):
        colour = _SERIES[k % len(_SERIES)]
        points = [(px(a), py(b)) for a, b in zip(x, y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2 if len(points) < 200 else 1)
        if len(points) < 60:
            for a, b in points:
                draw.ellipse([a - 3, b - 3, a + 3, b + 3], fill=colour)
        if label:
            lx, ly = w - right - 130, top + 8 + 16 * k
            draw.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=colour, width=3)
            draw.text((lx + 26, ly), label, fill=_FG, font=font)
    _draw_labels(img, draw, font, title, xlabel, ylabel)
    return img


def stack(images):
    """PIL images one above the other (widths may differ; the canvas is as wide as the widest)."""
    from PIL import Image

    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), _BG)
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height
    return out


def save_png(img, path) -> None:
    """Write a PIL image as PNG atomically."""
    from .io.atomic import atomic_open

    with atomic_open(path, "wb") as f:
        img.save(f, format="PNG")


def _colour(t: float) -> tuple[int, int, int]:
    """A dark-blue -> teal -> yellow ramp (viridis-like) for t in [0, 1]."""
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    return tuple(int(round(a + (b - a) * f)) for a, b in zip(stops[i], stops[i + 1]))


def _axis_ticks(lo: float, hi: float, log: bool) -> tuple[list[float], list[str]]:
    """Tick positions (in log10 units for log axes) and their labels."""
    if not log:
        ticks = nice_ticks(lo, hi)
        return ticks, [_fmt(t) for t in ticks]
    first, last = math.floor(lo), math.ceil(hi)
    if last - first < 2:  # less than two decades: finer ticks, labelled with their values
        ticks = nice_ticks(lo, hi)
        return ticks, [f"{10 ** t:.2g}" for t in ticks]
    step = max(1, math.ceil((last - first) / 8))
    ticks = list(range(first, last + 1, step))
    return [float(t) for t in ticks], [f"1e{t}" for t in ticks]


def scatter_plot(x, y, values=None, *, log_x: bool = False, log_y: bool = False, title: str = "",
                 xlabel: str = "", ylabel: str = "", value_label: str = "", size: tuple[int, int] = (640, 480)):
    """A PIL image of points (x, y), coloured by `values` with a colour bar when given (the CS231n
    hyperparameter-search figure: log learning rate vs log regularisation, colour = val accuracy).
    Points with a non-finite coordinate or value are left out."""
    from PIL import Image, ImageDraw, ImageFont

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    v = None if values is None else np.asarray(values, dtype=np.float64)
    if x.shape != y.shape or (v is not None and v.shape != x.shape):
        raise UsageError("scatter_plot: x, y and values must have the same length")
    for arr, log, name in ((x, log_x, "x"), (y, log_y, "y")):
        if log and np.any(arr[np.isfinite(arr)] <= 0):
            raise UsageError(f"scatter_plot: a log {name} axis needs positive values")
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.log10(x) if log_x else x
        ty = np.log10(y) if log_y else y
    keep = np.isfinite(tx) & np.isfinite(ty) & (np.isfinite(v) if v is not None else True)
    tx, ty = tx[keep], ty[keep]
    v = v[keep] if v is not None else None
    if tx.size == 0:
        raise UsageError("nothing finite to plot")

    w, h = size
    img = Image.new("RGB", size, _BG)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 70, 90 if v is not None else 20, 40, 55
    xt, xl = _axis_ticks(float(tx.min()), float(tx.max()), log_x)
    yt, yl = _axis_ticks(float(ty.min()), float(ty.max()), log_y)
    x0, x1, y0, y1 = min(xt[0], tx.min()), max(xt[-1], tx.max()), min(yt[0], ty.min()), max(yt[-1], ty.max())

    def px(a):
        return left + (a - x0) / ((x1 - x0) or 1) * (w - left - right)

    def py(b):
        return h - bottom - (b - y0) / ((y1 - y0) or 1) * (h - top - bottom)

    for t, label in zip(yt, yl):
        draw.line([(left, py(t)), (w - right, py(t))], fill=_GRID)
        draw.text((left - 8 - draw.textlength(label, font=font), py(t) - 6), label, fill=_FG, font=font)
    for t, label in zip(xt, xl):
        draw.line([(px(t), top), (px(t), h - bottom)], fill=_GRID)
        draw.line([(px(t), h - bottom), (px(t), h - bottom + 5)], fill=_FG)
        draw.text((px(t) - draw.textlength(label, font=font) / 2, h - bottom + 8), label, fill=_FG, font=font)
    draw.rectangle([left, top, w - right, h - bottom], outline=_FG)

    lo, hi = (float(v.min()), float(v.max())) if v is not None else (0.0, 1.0)
    order = np.argsort(v, kind="stable") if v is not None else np.arange(len(tx))  # best drawn last, on top
    for i in order:
        colour = _colour((v[i] - lo) / ((hi - lo) or 1)) if v is not None else _POINT
        draw.ellipse([px(tx[i]) - 5, py(ty[i]) - 5, px(tx[i]) + 5, py(ty[i]) + 5], fill=colour, outline=_FG)
    if v is not None:
        bx, bh = w - right + 20, h - top - bottom
        for k in range(int(bh)):
            draw.line([(bx, top + k), (bx + 14, top + k)], fill=_colour(1 - k / max(bh - 1, 1)))
        draw.rectangle([bx, top, bx + 14, top + bh], outline=_FG)
        for val, yy in ((hi, top), (lo, top + bh)):
            draw.text((bx + 18, yy - 6), f"{val:.3f}", fill=_FG, font=font)
        if value_label:
            draw.text((bx - 6, top - 16), value_label, fill=_FG, font=font)
    _draw_labels(img, draw, font, title, xlabel, ylabel)
    return img
