"""Call the app's callbacks through Dash's own HTTP endpoint, as the browser does."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import requests


def _outputs(key: str) -> list[dict[str, str]] | dict[str, str]:
    """A list for a multi-output callback (key ``..a.b...c.d..``), one dict for a single one."""
    parts = key.strip(".").split("...")
    out = []
    for part in parts:
        cid, prop = part.rsplit(".", 1)
        out.append({"id": cid, "property": prop})
    return out if key.startswith("..") else out[0]


class DashClient:
    """Posts callback requests to ``/_dash-update-component``: in process with Flask's test
    client, or over HTTP to a served copy of the same app when ``base_url`` is given."""

    def __init__(self, app, base_url: str | None = None, auth: tuple[str, str] | None = None):
        self.app = app
        self.base_url = base_url
        self.client = app.server.test_client()
        self.session = requests.Session()
        self.session.auth = auth
        self.last_bytes = 0
        self.last_status = 0

    def post(self, body: dict) -> tuple[int, bytes]:
        if self.base_url is None:
            resp = self.client.post("/_dash-update-component", json=body)
            return resp.status_code, resp.data
        resp = self.session.post(self.base_url + "/_dash-update-component", json=body, timeout=60)
        return resp.status_code, resp.content

    def key_for(self, output: str) -> str:
        """The callback that writes ``output`` (``id.property``): the one that writes only it
        when there is one (the main callback also draws some outputs a small one updates)."""
        keys = sorted(self.app.callback_map, key=lambda k: not isinstance(_outputs(k), dict))
        for key in keys:
            outs = _outputs(key)
            names = {
                f"{o['id']}.{o['property']}" for o in (outs if isinstance(outs, list) else [outs])
            }
            if output in names or any(n.split("@")[0] == output for n in names):
                return key
        raise KeyError(output)

    def call(
        self,
        first_output: str,
        values: dict[str, Any],
        changed: list[str],
        states: dict[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        key = self.key_for(first_output)
        spec = self.app.callback_map[key]
        values = {**(states or {}), **values}  # a value goes where the callback reads it
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
                "value": values.get(f"{s['id']}.{s['property']}"),
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
        status, data = self.post(body)
        self.last_bytes, self.last_status = len(data), status
        if status == 204:
            return {}
        assert status == 200, data[:500]
        return json.loads(data)["response"]

    def select(
        self,
        changed: str | None,
        value: Any = None,
        current: dict | None = None,
        search: str | None = None,
        rendered: dict | None = None,
        hidden: list[str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """One interaction: the new selection and the panels drawn for it (every panel,
        unless ``rendered`` says what the page already shows; none of ``hidden``, the
        figures the page has off screen)."""
        values = {"url.search": search}
        if changed:
            values[changed] = value
        return self.call(
            "selection.data",
            values,
            [changed] if changed else ["url.search"],
            {"selection.data": current, "rendered.data": rendered, "panels-hidden.data": hidden},
        )

    def render(
        self,
        selection: dict,
        metric: str = "dla",
        src: int | None = 0,
        rendered: dict | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Every panel for ``selection``, as a view option's change draws them."""
        return self.call(
            "run-picker.options",
            {
                "selection.data": selection,
                "metric-picker.value": metric,
                "source-picker.value": src,
            },
            ["metric-picker.value"],
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
