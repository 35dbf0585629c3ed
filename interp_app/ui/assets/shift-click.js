// Remember whether Shift was held at the last mouse press, so a shift-click in the head
// grid can toggle a head's ablation instead of selecting it (Dash's clickData carries no
// modifier keys).
window.interpShift = false;
document.addEventListener("mousedown", (e) => { window.interpShift = e.shiftKey; }, true);

window.dash_clientside = Object.assign({}, window.dash_clientside, {
  interp: {
    gridClick: function (click) {
      if (!click || !click.points || !click.points.length) {
        return window.dash_clientside.no_update;
      }
      return { head: click.points[0].customdata, shift: window.interpShift, t: Date.now() };
    },
    // A multiple is one heatmap trace named for its head: its name, as a point's
    // customdata (the cells carry no names: 1,024 strings a multiple).
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
  },
});
