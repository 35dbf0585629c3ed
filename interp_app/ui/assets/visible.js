// The 3D section is drawn only while it is on screen (or within a screen of it): an
// IntersectionObserver writes whether it is into the `section-3d-visible` store, an input
// of the 3D callbacks, so a click elsewhere never waits for (or sends) 3D figures that
// nobody sees, and scrolling down draws them for the current selection.
(function () {
  const SECTION = "section-3d";
  const STORE = "section-3d-visible";
  let shown = null;
  function watch(el) {
    const seen = new IntersectionObserver(
      (entries) => {
        const now = entries.some((e) => e.isIntersecting);
        if (now !== shown && window.dash_clientside && window.dash_clientside.set_props) {
          shown = now;
          window.dash_clientside.set_props(STORE, { data: now });
        }
      },
      { rootMargin: "50% 0px 50% 0px" }
    );
    seen.observe(el);
  }
  const wait = setInterval(() => {
    const el = document.getElementById(SECTION);
    if (el && window.dash_clientside && window.dash_clientside.set_props) {
      clearInterval(wait);
      watch(el);
    }
  }, 100);
})();
