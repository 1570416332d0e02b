"""The generic error-bar plot."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.errors import UsageError
from imgclf.plots import errorbar_plot, nice_ticks, save_png


def test_ticks_cover_range():
    ticks = nice_ticks(0.237, 0.291)
    assert ticks[0] <= 0.237 and ticks[-1] >= 0.291 and 3 <= len(ticks) <= 10
    assert nice_ticks(5, 5)  # a flat range still gets ticks


def test_plot_draws_and_saves(tmp_path):
    from PIL import Image

    img = errorbar_plot([1, 3, 10], points=[[0.2, 0.3], [0.25], [0.3, 0.31, 0.29]], mean=[0.25, 0.25, 0.3],
                        err=[0.05, 0, 0.01], title="t", xlabel="k", ylabel="accuracy", size=(320, 240))
    assert img.size == (320, 240)
    colours = {c for _, c in img.getcolors(10000)}
    assert len(colours) > 3  # more than background and axes
    save_png(img, tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as back:
        assert back.format == "PNG"


@pytest.mark.parametrize("kwargs", [{"x": []}, {"x": [1], "points": None, "mean": None},
                                    {"x": [1, 2], "mean": [1.0]}, {"x": [1], "mean": [np.nan]}])
def test_bad_input(kwargs):
    kwargs.setdefault("mean", [1.0])
    with pytest.raises(UsageError):
        errorbar_plot(**kwargs)
