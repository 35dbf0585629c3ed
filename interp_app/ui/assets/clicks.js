// What a click on the head grid or the multiples selected, read from where the pointer was
// pressed. Plotly reports a click's point from its last hover, recomputed at most every
// 50 ms: a pointer moved onto a cell and pressed at once would select the cell it crossed
// before. Shift held at the press toggles a head's ablation instead (Dash's clickData
// carries no modifier keys).
window.interpPress = { shift: false, x: NaN, y: NaN };
document.addEventListener(
  "pointerdown",  // a mouse, pen or touch press (Plotly cancels a touch's mouse events)
  (e) => { window.interpPress = { shift: e.shiftKey, x: e.clientX, y: e.clientY }; },
  true,
);

// The drag rectangle of a plot's subplot that holds the press, if any.
function pressedSubplot(graph) {
  const { x, y } = window.interpPress;
  for (const rect of graph.querySelectorAll(".nsewdrag")) {
    const r = rect.getBoundingClientRect();
    if (x >= r.left && x < r.right && y >= r.top && y < r.bottom) return { rect: r, el: rect };
  }
  return null;
}

// The grid's cell under the press, through the axes (zoomed or padded alike): one row per
// layer, one column per head, the cells centred on whole numbers.
function pressedCell(graph) {
  const hit = pressedSubplot(graph);
  const names = graph.data && graph.data[0] ? graph.data[0].customdata : null;
  const axes = graph._fullLayout;
  if (!hit || !names || !names.length || !axes || !axes.xaxis || !axes.yaxis) return null;
  const col = Math.round(axes.xaxis.p2c(window.interpPress.x - hit.rect.left));
  const row = Math.round(axes.yaxis.p2c(window.interpPress.y - hit.rect.top));
  return names[row] && typeof names[row][col] === "string" ? names[row][col] : null;
}

// The multiple under the press: each is one heatmap trace named for its head, on its own
// axes (subplot "x2y2" holds the trace drawn on axes x2 and y2).
function pressedMultiple(graph) {
  const hit = pressedSubplot(graph);
  if (!hit || !graph.data) return null;
  const subplot = hit.el.getAttribute("data-subplot");
  for (const trace of graph.data) {
    if ((trace.xaxis || "x") + (trace.yaxis || "y") === subplot) return trace.name;
  }
  return null;
}

window.dash_clientside = Object.assign({}, window.dash_clientside);
window.dash_clientside.interp = Object.assign(window.dash_clientside.interp || {}, {
  gridClick: function (click) {
    if (!click || !click.points || !click.points.length) {
      return window.dash_clientside.no_update;
    }
    const graph = document.querySelector("#head-grid .js-plotly-plot");
    const head = (graph && pressedCell(graph)) || click.points[0].customdata;
    return { head: head, shift: window.interpPress.shift, t: Date.now() };
  },
  // The multiples' cells carry no names (1,024 strings a multiple): the trace's name is
  // the head's.
  multiplesClick: function (click) {
    if (!click || !click.points || !click.points.length) {
      return window.dash_clientside.no_update;
    }
    const graph = document.querySelector("#head-multiples .js-plotly-plot");
    let name = graph ? pressedMultiple(graph) : null;
    if (typeof name !== "string") {
      const trace = graph && graph.data ? graph.data[click.points[0].curveNumber] : null;
      name = trace ? trace.name : null;
    }
    if (typeof name !== "string") {
      return window.dash_clientside.no_update;
    }
    return { points: [{ customdata: name }], t: Date.now() };
  },
});
