"""Refuse callback requests that no page of this app could have sent, before Dash sees them.

Dash trusts the shape of ``/_dash-update-component`` bodies: a missing key, a clientside
callback's name or JSON nested thousands deep becomes a 500 and a traceback in the log.
Here each such body gets a 400 that says what is wrong; the values inside a well-formed
body are the callbacks' own business (they validate every one).
"""

from __future__ import annotations

from typing import Any

from dash import Dash
from flask import current_app, request

CALLBACK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "output": str,
    "outputs": (list, dict),
    "inputs": list,
}
MAX_JSON_DEPTH = 64  # Dash's own payloads nest about 8 deep


def nesting_depth(value: object, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep a parsed JSON value nests, counted without recursion (stops past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _is_prop(item: Any) -> bool:
    """``{"id": ..., "property": "value", "value": ...}``: one input, state or output."""
    return (
        isinstance(item, dict)
        and isinstance(item.get("id"), str | dict)
        and isinstance(item.get("property"), str)
    )


def _slots_ok(items: Any, count: int) -> bool:
    """As many slots as the callback declares, each one prop or a list of props (ALL)."""
    return (
        isinstance(items, list)
        and len(items) == count
        and all(_is_prop(i) or (isinstance(i, list) and all(_is_prop(j) for j in i)) for i in items)
    )


def body_problem(body: Any, shapes: dict[str, tuple[int, int]]) -> str | None:
    """What makes a callback body unusable, or None when Dash can dispatch it."""
    if not isinstance(body, dict):
        return "the request body is not a JSON object"
    if nesting_depth(body) > MAX_JSON_DEPTH:
        return f"the request body nests deeper than {MAX_JSON_DEPTH} levels"
    for name, kind in CALLBACK_FIELDS.items():
        if not isinstance(body.get(name), kind):
            return f"the request body has no valid {name!r}"
    shape = shapes.get(body["output"])
    if shape is None:
        return "no such callback"
    outputs = body["outputs"] if isinstance(body["outputs"], list) else [body["outputs"]]
    if not all(_is_prop(o) for o in outputs):
        return "the request body has malformed 'outputs'"
    if not _slots_ok(body["inputs"], shape[0]):
        return "the request body's 'inputs' do not match the callback"
    if not _slots_ok(body.get("state", []), shape[1]):
        return "the request body's 'state' does not match the callback"
    changed = body.get("changedPropIds", [])
    if not (isinstance(changed, list) and all(isinstance(c, str) for c in changed)):
        return "the request body has malformed 'changedPropIds'"
    return None


def callback_shapes(app: Dash) -> dict[str, tuple[int, int]]:
    """(inputs, states) of every callback the server runs (clientside ones run in the
    browser: posting one would only find no function)."""
    return {
        key: (len(spec["inputs"]), len(spec.get("state", [])))
        for key, spec in app.callback_map.items()
        if "callback" in spec
    }


def refuse_malformed_callbacks():
    """Before each request: a callback body Dash cannot use gets a 400, never a 500."""
    if request.method != "POST" or request.path != "/_dash-update-component":
        return None
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # JSON nested thousands deep: Python's parser gives up
        body = None
    problem = body_problem(body, current_app.config["CALLBACK_SHAPES"])
    return None if problem is None else ({"error": problem}, 400)
