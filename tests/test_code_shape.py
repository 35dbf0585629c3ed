"""The product code stays readable: no function over 60 lines, no module over 400.

Limits from the restructuring issue; a module that grows past them wants splitting by job,
a function, by step. Tests, benchmarks and vendored assets are not product code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("interp_app", "training")
MAX_FUNCTION = 60
MAX_MODULE = 400


def _modules() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (REPO / package).rglob("*.py"))


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            length = node.end_lineno - start + 1
            if length > MAX_FUNCTION:
                out.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_the_product_code_is_found():
    names = {p.relative_to(REPO).as_posix() for p in _modules()}
    assert {"interp_app/ui/render.py", "training/cli.py"} <= names


def test_no_function_over_60_lines():
    long = [f for path in _modules() for f in _long_functions(path)]
    assert not long, "\n".join(long)


def test_no_module_over_400_lines():
    big = [
        f"{p.relative_to(REPO)} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE
    ]
    assert not big, "\n".join(big)
