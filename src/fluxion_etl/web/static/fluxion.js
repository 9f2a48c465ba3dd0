// fluxion-etl control centre: small enhancements. Every page works without this file.
//  - regions marked data-live="on" are refreshed from the server while something runs (the
//    server stops marking them once nothing does), every data-interval ms (default a second);
//  - the run log filter hides non-matching lines as one types;
//  - forms with data-confirm ask before they post;
//  - wide calendars start scrolled to their newest day (data-scroll="end").
(function () {
  "use strict";

  var INTERVAL_MS = 1000;
  var timer = null;

  function liveRegions() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-live]"));
  }

  function anyLive() {
    return liveRegions().some(function (el) { return el.dataset.live === "on"; });
  }

  function interval() {
    var wanted = liveRegions()
      .filter(function (el) { return el.dataset.live === "on"; })
      .map(function (el) { return parseInt(el.dataset.interval || INTERVAL_MS, 10) || INTERVAL_MS; });
    return Math.max(500, Math.min.apply(null, wanted));
  }

  function schedule() {
    if (timer === null && anyLive()) {
      timer = window.setTimeout(refresh, interval());
    }
  }

  function refresh() {
    timer = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (response.redirected && new URL(response.url).pathname === "/login") {
          window.location.reload();  // the session ended: show the login page
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        liveRegions().forEach(function (old) {
          var next = old.id ? fresh.getElementById(old.id) : null;
          if (next) { old.replaceWith(document.importNode(next, true)); }
        });
        bindConfirms(document);
        applyLogFilter();
        schedule();
      })
      .catch(function () { timer = window.setTimeout(refresh, INTERVAL_MS * 3); });
  }

  function applyLogFilter() {
    var input = document.getElementById("log-filter");
    if (!input) { return; }
    var needle = input.value.trim().toLowerCase();
    document.querySelectorAll("ol.logs li").forEach(function (line) {
      line.hidden = needle !== "" && line.textContent.toLowerCase().indexOf(needle) === -1;
    });
  }

  function bindConfirms(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) { return; }
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var input = document.getElementById("log-filter");
    if (input) { input.addEventListener("input", applyLogFilter); }
    bindConfirms(document);
    document.querySelectorAll("[data-scroll='end']").forEach(function (el) {
      el.scrollLeft = el.scrollWidth;
    });
    schedule();
  });
})();
