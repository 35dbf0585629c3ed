"""Call the app's callbacks through Dash's own HTTP endpoint, as the browser does."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np


def _outputs(key: str) -> list[dict[str, str]]:
    parts = key.strip(".").split("...")
    out = []
    for part in parts:
        cid, prop = part.rsplit(".", 1)
        out.append({"id": cid, "property": prop})
    return out


class DashClient:
    """Posts callback requests to ``/_dash-update-component`` with a Flask test client."""

    def __init__(self, app):
        self.app = app
        self.client = app.server.test_client()
        self.last_bytes = 0

    def key_for(self, first_output: str) -> str:
        for key in self.app.callback_map:
            if key.strip(".").startswith(first_output):
                return key
        raise KeyError(first_output)

    def call(
        self,
        first_output: str,
        values: dict[str, Any],
        changed: list[str],
        states: dict[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        key = self.key_for(first_output)
        spec = self.app.callback_map[key]
        inputs = []
        for item in spec["inputs"]:
            cid, prop = item["id"], item["property"]
            if cid.startswith("{"):  # pattern-matching ALL: a list of concrete inputs
                concrete = values.get(f"{cid}.{prop}", [])
                inputs.append(concrete)
            else:
                inputs.append({"id": cid, "property": prop, "value": values.get(f"{cid}.{prop}")})
        state = [
            {
                "id": s["id"],
                "property": s["property"],
                "value": (states or {}).get(f"{s['id']}.{s['property']}"),
            }
            for s in spec["state"]
        ]
        body = {
            "output": key,
            "outputs": _outputs(key),
            "inputs": inputs,
            "changedPropIds": changed,
            "state": state,
        }
        resp = self.client.post("/_dash-update-component", json=body)
        self.last_bytes = len(resp.data)
        if resp.status_code == 204:
            return {}
        assert resp.status_code == 200, resp.data[:500]
        return json.loads(resp.data)["response"]

    def select(
        self,
        changed: str | None,
        value: Any = None,
        current: dict | None = None,
        search: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        values = {"url.search": search}
        if changed:
            values[changed] = value
        return self.call(
            "selection.data",
            values,
            [changed] if changed else ["url.search"],
            {"selection.data": current},
        )

    def render(
        self,
        selection: dict,
        metric: str = "dla",
        src: int | None = 0,
        rendered: dict | None = None,
    ) -> dict[str, dict[str, Any]]:
        return self.call(
            "run-picker.options",
            {
                "selection.data": selection,
                "metric-picker.value": metric,
                "source-picker.value": src,
            },
            ["selection.data"],
            {"rendered.data": rendered},
        )


def decode_array(obj) -> np.ndarray:
    """Plotly sends numeric arrays as base64 typed arrays ({dtype, bdata, shape})."""
    if isinstance(obj, dict) and "bdata" in obj:
        arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
        shape = obj.get("shape")
        if shape:
            dims = [int(x) for x in str(shape).split(",")]
            arr = arr.reshape(dims)
        return arr
    return np.asarray(obj, dtype=float)
