/* Fan charts with uPlot (vendored): the last 24 h of history, the next 8 h as a p10–p90 band with
   the p50 line, warning and critical limits as dashed lines, and a "now" marker. Axes are in the
   browser's timezone (uPlot's default). */
(function () {
  "use strict";
  var charts = [];
  var COLORS = { history: "#2f6fdb", p50: "#e07b00", band: "rgba(224,123,0,0.20)", edge: "rgba(224,123,0,0.55)",
                 warning: "#d99a00", critical: "#d2342f", now: "#1d2430" };

  function build(d) {
    var ht = d.history_t || [], n = ht.length, fc = d.p50 || [], m = fc.length;
    var xs = ht.slice(), hist = (d.history || []).slice();
    var p10 = new Array(n).fill(null), p50 = new Array(n).fill(null), p90 = new Array(n).fill(null);
    if (m && n) {
      // Start the fan at the last observation so history and forecast read as one line.
      p10[n - 1] = p50[n - 1] = p90[n - 1] = hist[n - 1];
    }
    for (var i = 0; i < m; i++) {
      var t = d.forecast_t0 + i * d.step_seconds;
      if (xs.length && t <= xs[xs.length - 1]) continue;  // uPlot needs strictly increasing x
      xs.push(t); hist.push(null); p10.push(d.p10[i]); p50.push(d.p50[i]); p90.push(d.p90[i]);
    }
    var len = xs.length;
    var flat = function (v) { return new Array(len).fill(v === null || v === undefined ? null : v); };
    return [xs, hist, p10, p50, p90, flat(d.warning), flat(d.critical)];
  }

  function nowMarker(d) {
    return function (u) {
      var xs = u.data[0];
      if (!xs.length) return;
      var now = Date.now() / 1000, label = "now";
      if (now < xs[0] || now > xs[xs.length - 1]) {
        // Data fed with old timestamps (a backfill, the simulator): mark where the forecast starts.
        if (!d.forecast_t0) return;
        now = d.forecast_t0; label = "forecast start";
      }
      var ctx = u.ctx, x = Math.round(u.valToPos(now, "x", true));
      ctx.save();
      ctx.strokeStyle = COLORS.now; ctx.lineWidth = 1 * devicePixelRatio; ctx.setLineDash([3 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      ctx.setLineDash([]); ctx.fillStyle = COLORS.now; ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
      ctx.fillText(label, x + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
      ctx.restore();
    };
  }

  function make(el, d) {
    var data = build(d);
    var width = Math.max(320, el.clientWidth || 600);
    var opts = {
      width: width, height: 230,
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) {
          var hi = Math.max(max === null ? 1 : max, d.critical || 0, d.warning || 0);
          return [Math.min(0, min === null ? 0 : min), hi * 1.08 || 1];
        } },
      },
      series: [
        {},
        { label: "history", stroke: COLORS.history, width: 1.5, points: { show: false } },
        { label: "p10", stroke: COLORS.edge, width: 1, points: { show: false } },
        { label: "p50", stroke: COLORS.p50, width: 2, points: { show: false } },
        { label: "p90", stroke: COLORS.edge, width: 1, points: { show: false } },
        { label: "warning", stroke: COLORS.warning, width: 1, dash: [6, 4], points: { show: false } },
        { label: "critical", stroke: COLORS.critical, width: 1.5, dash: [6, 4], points: { show: false } },
      ],
      bands: [{ series: [4, 2], fill: COLORS.band }],
      axes: [{}, { label: d.unit, size: 52 }],
      legend: { live: true },
      hooks: { draw: [nowMarker(d)] },
    };
    var plot = new uPlot(opts, data, el);
    el.dataset.points = String(data[0].length);
    return plot;
  }

  function init(root) {
    if (typeof uPlot === "undefined") return;
    charts = charts.filter(function (c) { return document.body.contains(c.root); });
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var src = document.getElementById(el.dataset.chart);
      if (!src) return;
      el.innerHTML = "";
      charts.push(make(el, JSON.parse(src.textContent)));
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (c) {
        var w = c.root.parentNode && c.root.parentNode.clientWidth;
        if (w) c.setSize({ width: w, height: 230 });
      });
    }, 150);
  });
  window.tftCharts = { init: init, charts: function () { return charts; } };
})();
