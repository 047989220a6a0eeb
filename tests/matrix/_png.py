"""Reading a drawn chart back: how many rows of outcome-coloured squares a PNG holds."""

from __future__ import annotations

from pathlib import Path

from chokepoint.matrix.report import COLOURS


def square_rows(path: Path, *, min_side: int = 10) -> int:
    """Horizontal bands of the image holding squares (runs of at least ``min_side`` pixels, at least
    ``min_side`` pixels high) in exactly one of the matrix's outcome colours, full or pale (alpha 0.4 on
    white); the legend (right of 88 % of the width) is left out."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(str(path))[:, :, :3]
    height, width, _ = img.shape
    mask = np.zeros((height, width), bool)
    for hexa in COLOURS.values():
        rgb = np.array([int(hexa[i : i + 2], 16) for i in (1, 3, 5)]) / 255
        for colour in (rgb, 1 - 0.4 * (1 - rgb)):
            mask |= np.all(np.abs(img - colour) < 0.012, axis=2)
    mask[:, int(width * 0.88) :] = False
    rows = []
    for y in range(height):
        run = best = 0
        for on in mask[y]:
            run = run + 1 if on else 0
            best = max(best, run)
        rows.append(best >= min_side)
    bands, current = 0, 0
    for on in [*rows, False]:
        if on:
            current += 1
            continue
        if current >= min_side:
            bands += 1
        current = 0
    return bands
