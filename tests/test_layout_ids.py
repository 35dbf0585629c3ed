"""Every id a callback names exists on the page: with ids as constants and Dash checking
callbacks against ``validation_layout``, a typo can no longer become a silent dead callback."""

from __future__ import annotations

import json
from typing import Any

from interp_app.server.app import create_app
from interp_app.ui import ids


def _walk(component: Any):
    """Every component of a layout tree (children may be one component, a list or text)."""
    stack = [component]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif hasattr(item, "to_plotly_json"):
            yield item
            stack.append(getattr(item, "children", None))


def _page_ids(layout: Any) -> tuple[set[str], set[str]]:
    """(plain ids, pattern-matching types) on a page."""
    plain, types = set(), set()
    for c in _walk(layout):
        cid = getattr(c, "id", None)
        if isinstance(cid, str):
            plain.add(cid)
        elif isinstance(cid, dict):
            types.add(cid["type"])
    return plain, types


def _callback_ids(app) -> set[str]:
    """Every id the app's callbacks read or write (pattern ids as their type)."""
    named: set[str] = set()

    def add(cid: str) -> None:
        named.add(json.loads(cid)["type"] if cid.startswith("{") else cid)

    for key, spec in app.callback_map.items():
        for part in key.strip(".").split("..."):
            add(part.rsplit(".", 1)[0])
        for item in [*spec["inputs"], *spec.get("state", [])]:
            add(item["id"])
    return named


def test_every_callback_id_is_on_the_page(tmp_path):
    app = create_app(tmp_path)
    plain, types = _page_ids(app.validation_layout)
    missing = _callback_ids(app) - plain - types
    assert not missing, missing
    assert types == {ids.CHIP}
    assert not app.config.suppress_callback_exceptions


def test_ids_module_names_every_id_on_the_page(tmp_path):
    """The constants are the contract: nothing on the page is spelled out elsewhere."""
    plain, _ = _page_ids(create_app(tmp_path).layout)
    constants = {v for k, v in vars(ids).items() if k.isupper() and isinstance(v, str)}
    assert plain <= constants, plain - constants
    for documented in ("run-picker", "step-slider", "head-grid", "logit-lens", "selection"):
        assert documented in constants
