// The incident page's live countdowns: every element with data-deadline (an ISO time) shows
// the time left ("Acknowledge within 4:59") or, once passed, how late it is ("overdue by
// 0:12", in red and in words). One timer for the page, so elements swapped in by htmx tick too.
(function () {
  "use strict";

  function clock(seconds) {
    var hours = Math.floor(seconds / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var rest = seconds % 60;
    var mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
    return (hours ? hours + ":" : "") + mm + ":" + String(rest).padStart(2, "0");
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var deadline = Date.parse(el.dataset.deadline);
      if (isNaN(deadline)) return;
      var text = el.querySelector("[data-countdown]");
      if (!text) return;
      var seconds = Math.round((deadline - now) / 1000);
      var passed = seconds <= 0;
      text.textContent = (passed ? el.dataset.after : el.dataset.before) + " " + clock(Math.abs(seconds));
      el.classList.toggle("text-danger", passed);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    window.setInterval(tick, 1000);
  });
})();
