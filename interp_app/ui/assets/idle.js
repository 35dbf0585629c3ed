// When may the page send a request the user did not ask for? The main callback answers every
// click, and Dash drops the answer of a request superseded by a newer one of the same
// callback: a write of the hidden-figure list or of the run listing sent between a click and
// its answer would drop the click. So those writes wait until the page is idle: no request
// of the main callback in flight, none answered in the last QUIET ms (Dash reads, parses and
// applies an answer after its fetch resolves: the quiet covers that), and no pointer press or
// key in the last QUIET ms (a click's request leaves a few ms after the press, through a
// clientside hop). Other callbacks' requests (job progress, the sparkline) do not count. A
// page kept busy (the play timer) gets the write after MAX_WAIT ms, once nothing is in flight.
(function () {
  const QUIET = 300;
  const MAX_WAIT = 3000;
  const MAIN = "..selection.data."; // the main callback's outputs begin with the selection
  let pending = 0;
  let settledAt = 0;
  let inputAt = 0;

  const realFetch = window.fetch;
  window.fetch = async (...args) => {
    const url = String(args[0] && args[0].url ? args[0].url : args[0]);
    if (!url.includes("_dash-update-component") || !isMain(args[1])) return realFetch(...args);
    pending += 1;
    try {
      return await realFetch(...args);
    } finally {
      pending -= 1;
      settledAt = performance.now();
    }
  };
  function isMain(init) {
    try {
      return String(JSON.parse(init.body).output).startsWith(MAIN);
    } catch (e) {
      return false;
    }
  }
  for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, () => { inputAt = performance.now(); }, true);
  }

  function busy() {
    const now = performance.now();
    return pending > 0 || now - settledAt < QUIET || now - inputAt < QUIET;
  }

  // Run ``write`` once the page is idle; a later call under the same key replaces an
  // earlier one still waiting (only the newest value is worth writing).
  const waiting = new Map();
  function whenIdle(key, write) {
    const first = !waiting.has(key);
    waiting.set(key, write);
    if (!first) return;
    const since = performance.now();
    const attempt = () => {
      const waited = performance.now() - since;
      if (waited < MAX_WAIT ? busy() : pending > 0) {
        setTimeout(attempt, 100);
        return;
      }
      const run = waiting.get(key);
      waiting.delete(key);
      run();
    };
    setTimeout(attempt, 0);
  }

  window.interpIdle = { whenIdle };

  // The live poll's new listing of runs and steps goes to the main callback when idle.
  window.dash_clientside = Object.assign({}, window.dash_clientside);
  window.dash_clientside.interp = Object.assign(window.dash_clientside.interp || {}, {
    listing: function (found) {
      whenIdle("listing", () => window.dash_clientside.set_props("listing", { data: found }));
      return window.dash_clientside.no_update;
    },
  });
})();
