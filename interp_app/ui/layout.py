"""The page: dash-bootstrap-components panels, each with its public component id."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from interp_app.core.analysis import METRICS
from interp_app.core.causal import PATCH_MIN_GAP
from interp_app.ui import ids
from interp_app.ui.layout3d import views_3d

GRAPH_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def graph(component_id: str, height: int = 300) -> dcc.Loading:
    return dcc.Loading(
        dcc.Graph(id=component_id, config=GRAPH_CONFIG, style={"height": f"{height}px"}),
        type="dot",
        delay_show=300,
    )


def panel(title: str, body, **kw) -> dbc.Card:
    return dbc.Card(
        [
            dbc.CardHeader(title, className="py-1 fw-semibold small"),
            dbc.CardBody(body, className="p-2"),
        ],
        className="mb-3 shadow-sm",
        **kw,
    )


def build_layout(root: str, live_ms: int = 3000) -> html.Div:
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    dbc.Label("Run", html_for=ids.RUN_PICKER, className="small mb-0"),
                    dcc.Dropdown(id=ids.RUN_PICKER, clearable=False),
                ],
                md=2,
            ),
            dbc.Col(
                [
                    html.Div(
                        [
                            dbc.Label("Checkpoint", className="small mb-0 me-2"),
                            html.Span(id=ids.STEP_LABEL, className="badge bg-secondary me-3"),
                            dbc.Button(
                                "▶ Play",
                                id=ids.PLAY_BUTTON,
                                size="sm",
                                color="success",
                                className="me-1 py-0",
                                n_clicks=0,
                            ),
                            dcc.Dropdown(
                                id=ids.PLAY_SPEED,
                                options=[
                                    {"label": "slow", "value": 1500},
                                    {"label": "normal", "value": 700},
                                    {"label": "fast", "value": 300},
                                ],
                                value=700,
                                clearable=False,
                                searchable=False,
                                style={"width": "6.5rem", "display": "inline-block"},
                                className="me-3 align-middle small",
                            ),
                            dcc.Dropdown(
                                id=ids.COMPARE_STEP,
                                placeholder="compare with step…",
                                style={"width": "11rem", "display": "inline-block"},
                                className="align-middle small",
                            ),
                        ],
                        className="d-flex align-items-center flex-wrap",
                    ),
                    dcc.Slider(
                        id=ids.STEP_SLIDER,
                        min=0,
                        max=0,
                        step=1,
                        value=0,
                        marks={},
                        updatemode="mouseup",
                    ),
                ],
                md=6,
            ),
            dbc.Col(
                [
                    dbc.Label(
                        "Prompt (Enter to analyse)",
                        html_for=ids.PROMPT_INPUT,
                        className="small mb-0",
                    ),
                    dbc.Input(
                        id=ids.PROMPT_INPUT,
                        type="text",
                        debounce=True,
                        placeholder="i like spicy so i like",
                    ),
                ],
                md=4,
            ),
        ],
        className="g-3 align-items-end",
    )
    return html.Div(
        [
            dcc.Location(id=ids.URL, refresh=False),
            dcc.Store(id=ids.SELECTION),
            dcc.Store(id=ids.RENDERED),
            dcc.Store(id=ids.GRID_CLICK),
            dcc.Interval(id=ids.PLAY_INTERVAL, interval=700, disabled=True),
            dcc.Interval(id=ids.LIVE_POLL, interval=live_ms, disabled=live_ms <= 0),
            dbc.Navbar(
                dbc.Container(
                    [
                        html.Span("Transformer explorer", className="navbar-brand fw-bold"),
                        html.Span(f"checkpoints: {root}", className="text-light small"),
                    ],
                    fluid=True,
                ),
                color="dark",
                dark=True,
                className="mb-3",
            ),
            dbc.Container(
                [
                    html.Div(id=ids.NOTICES),
                    panel(
                        "Run, checkpoint and prompt",
                        [controls, html.Div(id=ids.TOKEN_CHIPS, className="mt-2")],
                    ),
                    dbc.Row(
                        [
                            dbc.Col(panel("Loss", graph(ids.LOSS_CURVE, 260)), md=6),
                            dbc.Col(panel("Prediction", graph(ids.PREDICTION, 300)), md=3),
                            dbc.Col(
                                panel(
                                    "Head grid",
                                    [
                                        dbc.Row(
                                            [
                                                dbc.Col(
                                                    dcc.Dropdown(
                                                        id=ids.METRIC_PICKER,
                                                        options=[
                                                            {"label": v, "value": k}
                                                            for k, v in METRICS.items()
                                                        ],
                                                        value="dla",
                                                        clearable=False,
                                                    ),
                                                    width=8,
                                                ),
                                                dbc.Col(
                                                    dcc.Dropdown(
                                                        id=ids.SOURCE_PICKER,
                                                        clearable=False,
                                                        placeholder="source",
                                                    ),
                                                    width=4,
                                                ),
                                            ],
                                            className="g-1 mb-1",
                                        ),
                                        graph(ids.HEAD_GRID, 300),
                                        html.Div(
                                            [
                                                dbc.Button(
                                                    "Ablate",
                                                    id=ids.ABLATE_BUTTON,
                                                    size="sm",
                                                    color="danger",
                                                    outline=True,
                                                    n_clicks=0,
                                                    className="me-2 py-0",
                                                ),
                                                dbc.RadioItems(
                                                    id=ids.ABLATE_MODE,
                                                    options=[
                                                        {"label": "zero", "value": "zero"},
                                                        {
                                                            "label": "mean (this prompt)",
                                                            "value": "mean",
                                                        },
                                                        {
                                                            "label": "mean (validation)",
                                                            "value": "valid-mean",
                                                        },
                                                    ],
                                                    value="zero",
                                                    inline=True,
                                                    className="small d-inline-block",
                                                ),
                                            ],
                                            className="d-flex align-items-center mt-1",
                                        ),
                                        html.Div(
                                            "Share: a head's direct attribution over the "
                                            "sum of |direct attribution| of every term of "
                                            "the logit (embeddings, heads, biases, MLPs, "
                                            "final LN bias), −1 to 1 at any logit. Mean "
                                            "ablation puts in the head's output averaged "
                                            "over this prompt's positions.",
                                            className="text-muted small mt-1",
                                        ),
                                    ],
                                ),
                                md=3,
                            ),
                        ]
                    ),
                    dbc.Row(
                        [
                            dbc.Col(
                                panel(
                                    "Attention pattern of the selected head",
                                    graph(ids.ATTENTION_PATTERN, 380),
                                ),
                                md=6,
                            ),
                            dbc.Col(
                                panel(
                                    "All heads, layers x heads",
                                    [
                                        dbc.RadioItems(
                                            id=ids.MULTIPLES_MODE,
                                            options=[
                                                {"label": "this step", "value": "step"},
                                                {
                                                    "label": "change since previous checkpoint",
                                                    "value": "change",
                                                },
                                            ],
                                            value="step",
                                            inline=True,
                                            className="small",
                                        ),
                                        graph(ids.HEAD_MULTIPLES, 380),
                                        dcc.Graph(
                                            id=ids.HEAD_SPARKLINE,
                                            config={"displayModeBar": False},
                                            style={"height": "150px"},
                                        ),
                                    ],
                                ),
                                md=6,
                            ),
                        ]
                    ),
                    dbc.Row(
                        [
                            dbc.Col(panel("Head timeline", graph(ids.HEAD_TIMELINE, 220)), md=8),
                            dbc.Col(
                                panel(
                                    "Prediction over training", graph(ids.PREDICTION_TIMELINE, 300)
                                ),
                                md=4,
                            ),
                        ]
                    ),
                    panel("Token attributions", graph(ids.TOKEN_ATTRIBUTIONS, 200)),
                    panel(
                        "Activation patching",
                        [
                            dbc.Row(
                                [
                                    dbc.Col(
                                        dbc.Label(
                                            "Corrupted prompt (same number of tokens; Enter)",
                                            html_for=ids.CORRUPT_INPUT,
                                            className="small mb-0",
                                        ),
                                        width="auto",
                                    ),
                                    dbc.Col(
                                        dbc.Input(
                                            id=ids.CORRUPT_INPUT,
                                            type="text",
                                            debounce=True,
                                            size="sm",
                                        ),
                                        md=4,
                                    ),
                                ],
                                className="g-2 align-items-center mb-1",
                            ),
                            graph(ids.PATCHING, 300),
                            html.Div(
                                "Patching runs on the model without ablation: heads ablated "
                                "above are not ablated here. When the two prompts' logit "
                                f"differences are within {PATCH_MIN_GAP:.1%} of the logit "
                                "scale of each other, there is no gap to normalise and the "
                                "panel says so.",
                                className="text-muted small",
                            ),
                        ],
                    ),
                    dbc.Row(
                        [
                            dbc.Col(
                                panel(
                                    "Residual-stream contributions",
                                    graph(ids.RESIDUAL_CONTRIBUTIONS, 320),
                                ),
                                md=7,
                            ),
                            dbc.Col(panel("Logit lens", graph(ids.LOGIT_LENS, 260)), md=5),
                        ]
                    ),
                    *views_3d(graph, panel),
                    html.Footer(
                        "Click a head in the grid, the multiples or the residual bars; a token "
                        "chip picks the position; a prediction bar picks the target. "
                        "The URL mirrors the view.",
                        className="text-muted small mb-4",
                    ),
                ],
                fluid=True,
            ),
        ]
    )
