// What is not on screen is not drawn. Two IntersectionObservers (a screen's half of margin
// above and below) tell the server what the user can see:
// - the 3D section: whether it is visible goes into the `section-3d-visible` store, which
//   gates the 3D callbacks (a click elsewhere never sends or waits for 3D figures);
// - every figure of the page: the ids of those off screen go into the `panels-hidden`
//   store, a view option of the main callback, which then leaves them as they are and
//   draws them (for the selection then) once they are scrolled to.
// The hidden list is written only when the page is idle (assets/idle.js): a new request of
// the main callback makes Dash drop the answer of one still in flight, and with it a click's.
(function () {
  const SECTION = "section-3d";
  const STORE = "section-3d-visible";
  const HIDDEN = "panels-hidden";
  const MARGIN = { rootMargin: "50% 0px 50% 0px" };
  let shown = null;
  let written = null;
  const off = new Set();

  function writeHidden() {
    window.interpIdle.whenIdle(HIDDEN, () => {
      const now = JSON.stringify([...off].sort());
      if (now !== written) {
        written = now;
        window.dash_clientside.set_props(HIDDEN, { data: JSON.parse(now) });
      }
    });
  }

  function watchSection(el) {
    const seen = new IntersectionObserver((entries) => {
      const now = entries.some((e) => e.isIntersecting);
      if (now !== shown) {
        shown = now;
        window.dash_clientside.set_props(STORE, { data: now });
      }
    }, MARGIN);
    seen.observe(el);
  }

  // Dash may replace a figure's element (as the page first settles): the figures are
  // looked up again twice a second, new elements observed, detached ones dropped.
  const watched = new Map();
  const figures = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.target.isConnected || watched.get(e.target.id) !== e.target) continue;
      if (e.isIntersecting) off.delete(e.target.id);
      else off.add(e.target.id);
    }
    setTimeout(writeHidden, 0);
  }, MARGIN);

  function watchFigures() {
    for (const g of document.querySelectorAll(".dash-graph[id]")) {
      const before = watched.get(g.id);
      if (before === g) continue;
      if (before) figures.unobserve(before);
      watched.set(g.id, g);
      figures.observe(g);
    }
  }

  const wait = setInterval(() => {
    const el = document.getElementById(SECTION);
    if (el && window.dash_clientside && window.dash_clientside.set_props) {
      clearInterval(wait);
      watchSection(el);
      watchFigures();
      setInterval(watchFigures, 500);
    }
  }, 100);
})();
