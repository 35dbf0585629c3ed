"""Drive a Dash background callback through its HTTP protocol, as dash-renderer does: the
first request starts the job and returns signed handles (``cacheKey``, ``job``), bound to
the page load's ``endId``; each later request with them returns progress, then the output."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlencode

from tests.dash_client import DashClient, _outputs

CONFIG = re.compile(r'<script id="_dash-config" type="application/json">(.*?)</script>', re.S)


class BackgroundClient:
    def __init__(self, client: DashClient):
        self.client = client
        page = self._get("/")
        self.end_id = json.loads(CONFIG.search(page).group(1))["end_id"]

    def _get(self, path: str) -> str:
        c = self.client
        if c.base_url is None:
            return c.client.get(path).get_data(as_text=True)
        return c.session.get(c.base_url + path, timeout=60).text

    def _post(self, body: dict, **args: str) -> tuple[int, dict]:
        c = self.client
        path = "/_dash-update-component?" + urlencode({"endId": self.end_id, **args})
        if c.base_url is None:
            resp = c.client.post(path, json=body)
            return resp.status_code, (resp.get_json(silent=True) or {})
        r = c.session.post(c.base_url + path, json=body, timeout=60)
        return r.status_code, (r.json() if r.content else {})

    def body(self, first_output: str, values: dict[str, Any], changed: list[str]) -> dict:
        key = self.client.key_for(first_output)
        spec = self.client.app.callback_map[key]

        def slot(item: dict) -> dict:
            name = f"{item['id']}.{item['property']}"
            return {"id": item["id"], "property": item["property"], "value": values.get(name)}

        inputs = [slot(i) for i in spec["inputs"]]
        state = [slot(s) for s in spec["state"]]
        return {
            "output": key,
            "outputs": _outputs(key),
            "inputs": inputs,
            "changedPropIds": changed,
            "state": state,
        }

    def start(self, body: dict, old_job: str | None = None) -> dict[str, str]:
        """Start the job; its signed handles."""
        args = {"oldJob": old_job} if old_job else {}
        status, data = self._post(body, **args)
        assert status == 200 and "cacheKey" in data, (status, data)
        return {"cacheKey": data["cacheKey"], "job": data["job"]}

    def poll(self, body: dict, handles: dict[str, str]) -> tuple[dict | None, dict | None]:
        """(progress values or None, the final response or None while it runs)."""
        status, data = self._post(body, **handles)
        if status == 204:
            return None, {}
        assert status == 200, (status, data)
        return data.get("progress"), data.get("response")

    def run(self, body: dict, timeout: float, every: float = 0.2) -> tuple[list[dict], dict]:
        """Start, poll until done; (every progress seen, the response)."""
        handles = self.start(body)
        seen: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            progress, response = self.poll(body, handles)
            if progress:
                seen.append(progress)
            if response is not None:
                return seen, response
            time.sleep(every)
        raise AssertionError(f"background job not done in {timeout} s; progress: {seen[-3:]}")
