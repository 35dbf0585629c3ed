"""One module per panel; the registry lists them in page order.

Adding a panel is one module (its layout fragment, figure builder, optional overlay, click
handler and the selection fields it depends on: see ``base.Panel``) plus one line here.
"""

from __future__ import annotations

from interp_app.panels import (
    attention,
    circuit,
    compare_runs,
    composition,
    controls,
    forward3d,
    head_grid,
    induction,
    logit_lens,
    loss,
    multiples,
    patching,
    prediction,
    residual,
    timelines,
    token_attributions,
)
from interp_app.panels.base import Panel

REGISTRY: tuple[Panel, ...] = (
    controls.RUN,
    controls.PROMPT,
    loss.PANEL,
    prediction.PANEL,
    head_grid.PANEL,
    attention.PANEL,
    multiples.PANEL,
    timelines.HEADS,
    timelines.PREDICTION,
    induction.PANEL,
    composition.PANEL,
    compare_runs.PANEL,
    token_attributions.PANEL,
    patching.PANEL,
    circuit.PANEL,
    residual.PANEL,
    logit_lens.PANEL,
    forward3d.PANEL,
)
