"""Numeric arrays in Plotly's typed-array form, for figures kept as plain dicts.

Figure dicts are serialised by ``plotly.io.json``, which writes numpy arrays as JSON number
lists; plotly.js also reads ``{"dtype", "bdata", "shape"}`` (base64 of the raw bytes), which
is about a third of the size and needs no number formatting on either side.
"""

from __future__ import annotations

import base64

import numpy as np

DTYPES = {"float32": "f4", "float64": "f8", "int32": "i4", "uint16": "u2", "uint8": "u1"}


def typed(values, dtype: str = "float32") -> dict:
    arr = np.ascontiguousarray(values, dtype=dtype)
    out = {"dtype": DTYPES[dtype], "bdata": base64.b64encode(arr.tobytes()).decode("ascii")}
    if arr.ndim > 1:
        out["shape"] = ",".join(str(n) for n in arr.shape)
    return out
