/* Local times and in-place refresh. The server renders times in UTC; here they become the
   browser's timezone. Every TFT_PREDICTION_INTERVAL_SECONDS the page polls a small JSON signature
   (latest run, alert changes, warmup progress); when it changes, the page fetches itself and swaps
   the marked regions, so there is one rendering path (the templates) and no full reload. */
(function () {
  "use strict";
  var fmt = {
    datetime: { dateStyle: "medium", timeStyle: "short" },
    time: { hour: "2-digit", minute: "2-digit" },
    short: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" },
  };

  function relative(seconds) {
    var future = seconds < 0, s = Math.abs(seconds), text;
    if (s < 60) text = Math.round(s) + " s";
    else if (s < 3600) text = Math.round(s / 60) + " min";
    else if (s < 86400) text = (s / 3600).toFixed(1) + " h";
    else text = (s / 86400).toFixed(1) + " d";
    return future ? "in " + text : text + " ago";
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      var kind = el.dataset.fmt || "datetime";
      el.title = d.toLocaleString(undefined, fmt.datetime) + " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")";
      if (kind === "relative") el.textContent = relative((Date.now() - d.getTime()) / 1000);
      else el.textContent = d.toLocaleString(undefined, fmt[kind] || fmt.datetime);
    });
  }

  function init(root) {
    localizeTimes(root);
    if (window.tftCharts) window.tftCharts.init(root);
  }

  var signature = null, busy = false;

  function refresh() {
    // A half-typed filter must not be wiped by a refresh.
    var active = document.activeElement;
    if (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return Promise.resolve();
    return fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "refresh" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-refresh]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) el.innerHTML = fresh.innerHTML;
        });
        init(document);
        document.body.dataset.refreshedAt = new Date().toISOString();
      });
  }

  function poll() {
    var url = document.body.dataset.pollUrl;
    if (!url || busy) return;
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        var next = JSON.stringify(data);
        var changed = signature !== null && next !== signature;
        signature = next;
        if (changed) return refresh();
      })
      .catch(function () { /* offline or restarting: try again next interval */ })
      .then(function () { busy = false; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    var seconds = parseInt(document.body.dataset.interval || "0", 10);
    if (seconds > 0 && document.body.dataset.pollUrl) {
      poll();
      setInterval(poll, seconds * 1000);
    }
    // Ages ("2 min ago") move on between refreshes.
    setInterval(function () {
      document.querySelectorAll('time[data-fmt="relative"]').forEach(function (el) {
        var d = new Date(el.getAttribute("datetime"));
        if (!isNaN(d)) el.textContent = relative((Date.now() - d.getTime()) / 1000);
      });
    }, 10000);
  });
  window.tftDashboard = { refresh: refresh, poll: poll };
})();
