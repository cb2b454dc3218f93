// Follow the system's light or dark preference (Bootstrap colour modes). Loaded before the
// page renders so that it never flashes the wrong theme.
(function () {
  "use strict";
  var query = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    document.documentElement.setAttribute("data-bs-theme", query.matches ? "dark" : "light");
  }
  apply();
  query.addEventListener("change", apply);
})();
