// Small behaviours for every page. No inline scripts anywhere: the CSP forbids them.
(function () {
  "use strict";

  // Times: the title shows the viewer's zone and UTC.
  function describeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.described) return;
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      var local = when.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
      });
      el.title = local + "\n" + when.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
      el.dataset.described = "1";
    });
  }

  // "/" focuses the page's search box, unless the user is typing somewhere.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var active = document.activeElement;
    if (active && (active.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName))) return;
    var search = document.querySelector("[data-search]");
    if (search) {
      event.preventDefault();
      search.focus();
    }
  });

  // The live log follows new lines while the reader is at its end.
  function followLog(root) {
    root.querySelectorAll("[data-follow]").forEach(function (log) {
      var nearEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
      if (nearEnd || !log.dataset.followed) {
        log.scrollTop = log.scrollHeight;
        log.dataset.followed = "1";
      }
    });
  }

  // A failed htmx request says so instead of failing silently.
  document.addEventListener("htmx:responseError", function (event) {
    var box = document.getElementById("messages");
    if (!box) return;
    var alert = document.createElement("div");
    alert.className = "alert alert-danger";
    alert.setAttribute("role", "alert");
    alert.textContent = "The server answered " + event.detail.xhr.status + ". Reload the page to see the latest state.";
    box.replaceChildren(alert);
  });

  function init(root) {
    describeTimes(root);
    followLog(document);
  }
  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSettle", function (event) { init(event.target); });
})();
