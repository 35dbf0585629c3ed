"""Every component id of the page, in one place: the public contract of links, tests and
the browser-side scripts (``assets/clicks.js``, ``idle.js``, ``visible.js``), and a typo
here is a NameError, not a silent dead callback. Names follow the ids (``head-grid`` is
``HEAD_GRID``)."""

from __future__ import annotations

from typing import Any

ABLATE_BUTTON = "ablate-button"
ABLATE_MODE = "ablate-mode"
ATTENTION_PATTERN = "attention-pattern"
ATTENTION_THRESHOLD = "attention-threshold"
COMPARE_STEP = "compare-step"
CORRUPT_INPUT = "corrupt-input"
EMBEDDING_KEY = "embedding-key"
EMBEDDING_SET = "embedding-set"
EMBEDDING_STACKS = "embedding-stacks"
EXPORT_3D = "export-3d"
EXPORT_3D_FILE = "export-3d-file"
FORWARD_3D = "forward-3d"
FORWARD_KEY = "forward-key"
GRID_CLICK = "grid-click"
HEAD_GRID = "head-grid"
HEAD_MULTIPLES = "head-multiples"
HEAD_SPARKLINE = "head-sparkline"
HEAD_TIMELINE = "head-timeline"
JOB_BAR = "job-bar"
JOB_BOX = "job-box"
JOB_CANCEL = "job-cancel"
JOB_DONE = "job-done"
JOB_PROGRESS = "job-progress"
JOB_REQUEST = "job-request"
JOB_RESUME = "job-resume"
JOB_RUNNING = "job-running"
JOB_STATUS = "job-status"
LISTING = "listing"
LISTING_FOUND = "listing-found"  # the live poll's, passed on when idle (assets/idle.js)
LIVE_POLL = "live-poll"
LOGIT_LENS = "logit-lens"
LOSS_CURVE = "loss-curve"
METRIC_PICKER = "metric-picker"
MULTIPLES_MODE = "multiples-mode"
NEAREST_TOKENS = "nearest-tokens"
NOTICES = "notices"
PATCHING = "patching"
PLAY_BUTTON = "play-button"
PLAY_INTERVAL = "play-interval"
PLAY_SPEED = "play-speed"
PREDICTION = "prediction"
PREDICTION_TIMELINE = "prediction-timeline"
PROMPT_INPUT = "prompt-input"
RENDERED = "rendered"
RESIDUAL_CONTRIBUTIONS = "residual-contributions"
RUN_PICKER = "run-picker"
SELECTION = "selection"
SOURCE_PICKER = "source-picker"
STEP_LABEL = "step-label"
STEP_SLIDER = "step-slider"
TOKEN_ATTRIBUTIONS = "token-attributions"
TOKEN_CHIPS = "token-chips"
URL = "url"

# The induction lab's, the circuit panel's and the scale views' components
CIRCUIT_GRAPH = "circuit-graph"
CIRCUIT_TIMELINE = "circuit-timeline"
CIRCUIT_FAITHFULNESS = "circuit-faithfulness"
CIRCUIT_METHOD = "circuit-method"
CIRCUIT_TOP_K = "circuit-top-k"
CIRCUIT_SWITCH = "circuit-switch"
INDUCTION_CURVES = "induction-curves"
INDUCTION_COLUMN = "induction-curves-column"
COMPOSITION = "composition"
COMPOSITION_COLUMN = "composition-column"
COMPARE_RUNS = "compare-runs"
COMPARE_RUNS_PICKER = "compare-runs-picker"
COMPARE_RUNS_HEAD = "compare-runs-head"
COMPARE_RUNS_COLUMN = "compare-runs-column"
HEAD_SEARCH = "head-search"  # a typed head name (L7H3) selects that head
MULTIPLES_CLICK = "multiples-click"  # the clicked multiple's head name (clientside hop)
MULTIPLES_FRAME = "multiples-frame"  # the selected multiple's frame: an element over the figure
MULTIPLES_LABELS = "multiples-labels"  # the multiples' head names: elements over the figure
MULTIPLES_CAPTION = "multiples-caption"  # which head is selected, under the figure's title
SECTION_3D = "section-3d"  # the 3D section, watched by assets/visible.js
SECTION_3D_VISIBLE = (
    "section-3d-visible"  # whether it is on screen (or near): the 3D callbacks draw then
)
PANELS_HIDDEN = "panels-hidden"  # the figures off screen (assets/visible.js): drawn when shown
SELECTION_3D = "selection-3d"  # the selection, passed on only while the 3D section is visible

CHIP = "chip"  # pattern-matching type of the token chips: {"type": CHIP, "index": i}


def chip(index: Any) -> dict[str, Any]:
    """The id of the token chip at one position."""
    return {"type": CHIP, "index": index}
