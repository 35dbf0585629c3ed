"""What the browser benchmarks wait for in the page (JavaScript conditions), shared by
``paint_bench.py`` and ``scale_bench.py``: a request counter set up by their tracking
script (``window.__pending``), panel titles, the multiples' caption."""

from __future__ import annotations

PAINTED = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def settled(page, condition: str, timeout: float = 60_000) -> None:
    """Wait until ``condition`` holds with no callback in flight, then for two frames."""
    page.wait_for_function(f"() => ({condition}) && window.__pending === 0", timeout=timeout)
    page.evaluate(PAINTED)


def title_has(panel: str, text: str) -> str:
    return (
        f"(document.querySelector('#{panel} .gtitle') || {{textContent: ''}})"
        f".textContent.includes({text!r})"
    )


def multiples_say(name: str) -> str:
    """The multiples name the selected head: in their caption (in their title before
    session 9: the same check measures older code with ``--app-dir``)."""
    caption = (
        f"(document.getElementById('multiples-caption') || {{textContent: ''}})"
        f".textContent.includes({name!r})"
    )
    return f"({caption} || {title_has('head-multiples', name)})"
