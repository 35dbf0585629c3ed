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

from interp_app.panels.plotly_arrays import typed

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
    n = len(boxes)
    h, w, d = sizes[:, 0], sizes[:, 1], sizes[:, 2]
    bottoms = z + np.concatenate([[0.0], np.cumsum(h + GAP)[:-1]])
    origin = np.stack([x - w / 2, y - d / 2, bottoms], -1)  # [n, 3] lower corner of each box
    corners = (_CORNERS[None] * np.stack([w, d, h], -1)[:, None] + origin[:, None]).reshape(-1, 3)
    tri = (_FACES[None] + 8 * np.arange(n)[:, None, None]).reshape(-1, 3)
    text = []
    for b in range(n):
        first, last = PER_BOX * b, min(PER_BOX * (b + 1), len(v)) - 1
        pad = " padded" if last < first + PER_BOX - 1 else ""
        hb, wb, db, cb = boxes[b]
        line = (
            f"box {b}, dims {first}–{last}{pad}<br>h {hb:+.3f} w {wb:+.3f} d {db:+.3f} c {cb:+.3f}"
        )
        text.extend([line] * 8)
    # numpy arrays travel as compact typed arrays (base64), not as JSON number lists
    return {
        "type": "mesh3d",
        "x": typed(corners[:, 0]),
        "y": typed(corners[:, 1]),
        "z": typed(corners[:, 2]),
        "i": typed(tri[:, 0], "uint16"),
        "j": typed(tri[:, 1], "uint16"),
        "k": typed(tri[:, 2], "uint16"),
        "intensity": typed(np.repeat(colour, 8)),
        "colorscale": COLORSCALE,
        "cmin": 0.0,
        "cmax": 1.0,
        "showscale": False,
        "flatshading": True,
        "opacity": opacity,
        "hovertext": text,
        "hovertemplate": f"%{{hovertext}}<extra>{label}</extra>",
        "name": label,
        "meta": meta,
    }
