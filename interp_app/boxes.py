"""A vector drawn as the seed article draws it: a stack of boxes, four numbers a box.

Numbers 4b, 4b+1, 4b+2 of a vector set box b's height, width and depth; number 4b+3 its
colour (magma). Sizes and colours are scaled over every vector of one figure (a ``Scale``),
so stacks side by side compare; a vector whose width is not a multiple of four is padded
with ``PAD``, zero: the value a direction the vector does not use would have.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from plotly.colors import sample_colorscale

PER_BOX = 4
PAD = 0.0
MIN_SIZE = 0.2  # the smallest number still draws a box one can see and hover
GAP = 0.06  # between boxes of one stack
COLORSCALE = "Magma"

# The 12 triangles of a box over its 8 corners (corner c: x bit 1, y bit 2, z bit 4).
_FACES = np.array(
    [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],  # bottom, top
        [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],  # front, back
        [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],  # left, right
    ]
)  # fmt: skip
_CORNERS = np.array([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], float)


@dataclass(frozen=True)
class Scale:
    """Ranges over one figure: ``lo..hi`` of the size numbers, ``clo..chi`` of the colours."""

    lo: float
    hi: float
    clo: float
    chi: float


def padded(vector: np.ndarray) -> np.ndarray:
    """[D] -> [ceil(D/4), 4], padded with ``PAD``."""
    v = np.asarray(vector, np.float64).ravel()
    n = -(-len(v) // PER_BOX)
    out = np.full(n * PER_BOX, PAD)
    out[: len(v)] = v
    return out.reshape(n, PER_BOX)


def scale_for(vectors: Iterable[np.ndarray]) -> Scale:
    boxes = np.concatenate([padded(v) for v in vectors])
    sizes, colours = boxes[:, :3], boxes[:, 3]
    return Scale(float(sizes.min()), float(sizes.max()), float(colours.min()), float(colours.max()))


def box_sizes(vector: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """(sizes [n, 3] as height, width, depth in MIN_SIZE..1; colour position [n] in 0..1)."""
    boxes = padded(vector)
    span = scale.hi - scale.lo
    rel = (boxes[:, :3] - scale.lo) / span if span > 0 else np.ones_like(boxes[:, :3])
    sizes = MIN_SIZE + (1.0 - MIN_SIZE) * np.clip(rel, 0.0, 1.0)
    cspan = scale.chi - scale.clo
    colour = (boxes[:, 3] - scale.clo) / cspan if cspan > 0 else np.full(len(boxes), 0.5)
    return sizes, np.clip(colour, 0.0, 1.0)


def colours(position: np.ndarray) -> list[str]:
    """Magma colours (``rgb(...)`` strings) at positions 0..1."""
    return sample_colorscale(COLORSCALE, [float(p) for p in position])


def stack_height(vector: np.ndarray, scale: Scale) -> float:
    sizes, _ = box_sizes(vector, scale)
    return float(sizes[:, 0].sum() + GAP * (len(sizes) - 1))


def stack_trace(
    vector: np.ndarray,
    scale: Scale,
    x: float,
    y: float,
    label: str,
    meta: str = "stack",
    z: float = 0.0,
    opacity: float = 1.0,
) -> dict:
    """One ``mesh3d`` trace: the stack standing on (x, y, z), boxes centred on (x, y)."""
    v = np.asarray(vector, np.float64).ravel()
    boxes = padded(v)
    sizes, colour = box_sizes(v, scale)
    xs, ys, zs, faces, intensity, text = [], [], [], [], [], []
    bottom = z
    for b, ((h, w, d), c) in enumerate(zip(sizes, colour, strict=True)):
        corners = _CORNERS * (w, d, h) + (x - w / 2, y - d / 2, bottom)
        faces.append(_FACES + 8 * b)
        xs.extend(corners[:, 0])
        ys.extend(corners[:, 1])
        zs.extend(corners[:, 2])
        intensity.extend([float(c)] * 8)
        first = PER_BOX * b
        last = min(first + PER_BOX, len(v)) - 1
        dims = f"dims {first}–{last}" + (" (padded)" if last < first + PER_BOX - 1 else "")
        h_, w_, d_, c_ = boxes[b]
        text.extend(
            [
                f"{label}, box {b} ({dims})<br>height {h_:+.3f} · width {w_:+.3f}"
                f" · depth {d_:+.3f} · colour {c_:+.3f}"
            ]
            * 8
        )
        bottom += h + GAP
    tri = np.concatenate(faces)
    return {
        "type": "mesh3d",
        "x": np.round(xs, 4).tolist(),
        "y": np.round(ys, 4).tolist(),
        "z": np.round(zs, 4).tolist(),
        "i": tri[:, 0].tolist(),
        "j": tri[:, 1].tolist(),
        "k": tri[:, 2].tolist(),
        "intensity": np.round(intensity, 4).tolist(),
        "colorscale": COLORSCALE,
        "cmin": 0.0,
        "cmax": 1.0,
        "showscale": False,
        "flatshading": True,
        "opacity": opacity,
        "hovertext": text,
        "hoverinfo": "text",
        "name": label,
        "meta": meta,
    }
