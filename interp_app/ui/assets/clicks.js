// What a click on a heatmap selected, read from where the pointer was pressed. Plotly names
// a click's point from its last hover, recomputed at most every 50 ms: a pointer moved onto
// a cell and pressed at once would select the cell it crossed before. So on every press the
// figure's `emit` is wrapped (once), and a `plotly_click` on a heatmap gets the cell under
// the press, found through the axes (zoomed or padded alike), before Dash reads it. Shift
// held at the press toggles a head's ablation in the head grid (Dash's clickData carries no
// modifier keys).
window.interpPress = { shift: false, x: NaN, y: NaN };

// The drag rectangle of a figure's subplot that holds the press, if any.
function pressedSubplot(graph) {
  const { x, y } = window.interpPress;
  for (const rect of graph.querySelectorAll(".nsewdrag")) {
    const r = rect.getBoundingClientRect();
    if (x >= r.left && x < r.right && y >= r.top && y < r.bottom) return { rect: r, el: rect };
  }
  return null;
}

// The index along one axis of the cell at pixel ``px``: cells centred on their coordinates
// (category positions, or the numbers given), the nearest one.
function cellIndex(axis, coords, count, px) {
  const at = axis.p2c(px);
  if (!coords) return Math.round(at);
  if (axis.type === "category") {
    const name = axis._categories[Math.round(at)]; // categories are kept as strings
    return Array.prototype.findIndex.call(coords, (c) => String(c) === name);
  }
  let best = -1;
  for (let i = 0; i < count; i += 1) {
    if (best < 0 || Math.abs(coords[i] - at) < Math.abs(coords[best] - at)) best = i;
  }
  return best;
}

// The point of the heatmap cell under the press, shaped as Plotly's own (the fields Dash
// keeps), or null when the press is on no heatmap cell. Only a click Plotly gave to a
// heatmap is corrected (a line or a marker over it keeps its point). The figure's full
// data holds the arrays decoded (typed arrays arrive encoded).
function pressedPoint(graph, point) {
  const hit = pressedSubplot(graph);
  const layout = graph._fullLayout;
  const traces = graph._fullData;
  if (!hit || !layout || !traces || !point || !point.data || point.data.type !== "heatmap") {
    return null;
  }
  const subplot = hit.el.getAttribute("data-subplot");
  const onIt = (t) =>
    t && t.type === "heatmap" && t.visible === true && t.hoverinfo !== "skip" &&
    !t.transpose && (t.xaxis || "x") + (t.yaxis || "y") === subplot;
  // the clicked trace when the press is on it, else the top heatmap there (drawn last)
  const own = traces.find((t) => t.index === point.curveNumber);
  const trace = onIt(own) ? own : traces.filter(onIt).pop();
  if (!trace) return null;
  const xa = layout["xaxis" + (trace.xaxis || "x").slice(1)];
  const ya = layout["yaxis" + (trace.yaxis || "y").slice(1)];
  const rows = trace.z ? trace.z.length : 0;
  const first = rows ? trace.z[0] : null; // a row: an array or a typed array
  const cols = first && (Array.isArray(first) || ArrayBuffer.isView(first)) ? first.length : 0;
  if (!xa || !ya || !cols) return null;
  const col = cellIndex(xa, trace.x, cols, window.interpPress.x - hit.rect.left);
  const row = cellIndex(ya, trace.y, rows, window.interpPress.y - hit.rect.top);
  if (row < 0 || row >= rows || col < 0 || col >= cols) return null;
  const cell = (grid) => (grid && grid[row] ? grid[row][col] : undefined);
  const fixed = Object.assign({}, point, {
    data: trace._input,
    fullData: trace,
    curveNumber: trace.index,
    pointNumber: [row, col],
    pointIndex: [row, col],
    x: trace.x ? trace.x[col] : col,
    y: trace.y ? trace.y[row] : row,
    z: cell(trace.z),
    customdata: cell(trace.customdata),
    text: cell(trace.text),
  });
  delete fixed.bbox; // the hovered cell's, not this one's
  delete fixed.hovertext;
  return fixed;
}

function correctClicks(graph) {
  if (!graph || typeof graph.emit !== "function" || graph.emit.pressed) return;
  const emit = graph.emit;
  const wrapped = function (name, data) {
    if (name === "plotly_click" && data && data.points && data.points.length) {
      try {
        const fixed = pressedPoint(graph, data.points[0]);
        if (fixed) data = Object.assign({}, data, { points: [fixed] });
      } catch (err) {
        console.warn("click kept as Plotly named it:", err); // never lose the click itself
      }
    }
    return emit.call(this, name, data);
  };
  wrapped.pressed = true;
  graph.emit = wrapped;
}

document.addEventListener(
  "pointerdown", // a mouse, pen or touch press (Plotly cancels a touch's mouse events)
  (e) => {
    window.interpPress = { shift: e.shiftKey, x: e.clientX, y: e.clientY };
    correctClicks(e.target && e.target.closest ? e.target.closest(".js-plotly-plot") : null);
  },
  true,
);

window.dash_clientside = Object.assign({}, window.dash_clientside);
window.dash_clientside.interp = Object.assign(window.dash_clientside.interp || {}, {
  gridClick: function (click) {
    if (!click || !click.points || !click.points.length) {
      return window.dash_clientside.no_update;
    }
    return { head: click.points[0].customdata, shift: window.interpPress.shift, t: Date.now() };
  },
  // A multiple is one heatmap trace named for its head (the cells carry no names: 1,024
  // strings a multiple): the trace's name, as a point's customdata.
  multiplesClick: function (click) {
    if (!click || !click.points || !click.points.length) {
      return window.dash_clientside.no_update;
    }
    const graph = document.querySelector("#head-multiples .js-plotly-plot");
    const trace = graph && graph.data ? graph.data[click.points[0].curveNumber] : null;
    if (!trace || typeof trace.name !== "string") {
      return window.dash_clientside.no_update;
    }
    return { points: [{ customdata: trace.name }], t: Date.now() };
  },
});
