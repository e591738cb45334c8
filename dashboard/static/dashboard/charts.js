/* Fan charts with uPlot (vendored): the last 24 h of history, the next 8 h as a p10–p90 band with
   the p50 line, warning and critical limits as dashed lines, and a "now" marker. Axes are in the
   browser's timezone (uPlot's default). */
(function () {
  "use strict";
  var charts = [];
  var COLORS = { history: "#2f6fdb", p50: "#e07b00", band: "rgba(224,123,0,0.20)", edge: "rgba(224,123,0,0.55)",
                 warning: "#d99a00", critical: "#d2342f", now: "#1d2430" };

  function build(d) {
    // One x axis for history and forecast, merged by time: a stale forecast starts before the
    // history ends, and its fan must still be drawn from its own origin, not cut at the last bucket.
    var ht = d.history_t || [], hv = d.history || [], m = (d.p50 || []).length;
    var rows = {};
    function row(t) {
      if (!rows[t]) rows[t] = { t: t, h: null, p10: null, p50: null, p90: null };
      return rows[t];
    }
    for (var j = 0; j < ht.length; j++) row(ht[j]).h = hv[j];
    for (var i = 0; i < m; i++) {
      var r = row(d.forecast_t0 + i * d.step_seconds);
      r.p10 = d.p10[i]; r.p50 = d.p50[i]; r.p90 = d.p90[i];
    }
    if (m) {
      // The bucket just before the origin is the forecast's last context point: start the fan
      // there so history and forecast read as one line.
      var before = rows[d.forecast_t0 - d.step_seconds];
      if (before && before.h !== null && before.p50 === null) before.p10 = before.p50 = before.p90 = before.h;
    }
    var sorted = Object.keys(rows).map(function (k) { return rows[k]; }).sort(function (a, b) { return a.t - b.t; });
    var pick = function (key) { return sorted.map(function (r) { return r[key]; }); };
    var flat = function (v) { return new Array(sorted.length).fill(v === null || v === undefined ? null : v); };
    return [pick("t"), pick("h"), pick("p10"), pick("p50"), pick("p90"), flat(d.warning), flat(d.critical)];
  }

  function vline(u, t, label, color) {
    var ctx = u.ctx, x = Math.round(u.valToPos(t, "x", true)), px = devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = color; ctx.lineWidth = px; ctx.setLineDash([3 * px, 3 * px]);
    ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = color; ctx.textAlign = "left"; ctx.font = (11 * px) + "px system-ui, sans-serif";
    ctx.fillText(label, x + 4 * px, u.bbox.top + 12 * px);
    ctx.restore();
    return x;
  }

  function markers(d) {
    // The forecast's start is always marked (a stale one says so); "now" too when it is on the chart.
    return function (u) {
      var xs = u.data[0];
      if (!xs.length) return;
      var startX = null, now = Date.now() / 1000;
      if (d.forecast_t0) startX = vline(u, d.forecast_t0, d.stale ? "forecast start (stale)" : "forecast start", d.stale ? COLORS.critical : COLORS.now);
      if (now >= xs[0] && now <= xs[xs.length - 1]) {
        var nowX = Math.round(u.valToPos(now, "x", true));
        if (startX === null || Math.abs(nowX - startX) > 40 * devicePixelRatio) vline(u, now, "now", COLORS.now);
      }
    };
  }

  function shade(d) {
    // Where the model attended: each 30-minute block of history tinted by its attention mass
    // (relative to the heaviest block), drawn under the series.
    var a = d.attention;
    return function (u) {
      if (!a || !a.blocks || !a.blocks.length) return;
      var top = Math.max.apply(null, a.blocks) || 1, ctx = u.ctx;
      ctx.save();
      for (var i = 0; i < a.blocks.length; i++) {
        if (!a.blocks[i]) continue;
        var x0 = u.valToPos(a.t0 + i * a.block_seconds, "x", true), x1 = u.valToPos(a.t0 + (i + 1) * a.block_seconds, "x", true);
        ctx.fillStyle = "rgba(122,70,200," + (0.28 * a.blocks[i] / top).toFixed(3) + ")";
        ctx.fillRect(x0, u.bbox.top, Math.max(1, x1 - x0), u.bbox.height);
      }
      ctx.restore();
    };
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svgEl(name, attrs, text) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function importance(el, e) {
    // Horizontal bars: the heaviest inputs of each group (weights sum to 1 per group).
    var groups = [["encoder", "past inputs"], ["static", "static inputs"], ["decoder", "known future"]];
    var rowH = 16, labelW = 150, barW = 260, y = 0, svg = svgEl("svg", { role: "img" });
    groups.forEach(function (g) {
      var items = ((e.variables || {})[g[0]] || []).slice(0, 6);
      if (!items.length) return;
      y += rowH;
      svg.appendChild(svgEl("text", { x: 0, y: y - 4, "class": "group" }, g[1]));
      items.forEach(function (v) {
        svg.appendChild(svgEl("text", { x: 8, y: y + rowH - 4 }, v.name));
        svg.appendChild(svgEl("rect", { x: labelW, y: y + 2, height: rowH - 4, width: Math.max(1, v.weight * barW),
                                        "class": "bar " + g[0], "data-input": v.name }));
        svg.appendChild(svgEl("text", { x: labelW + v.weight * barW + 4, y: y + rowH - 4 }, v.weight.toFixed(2)));
        y += rowH;
      });
      y += 4;
    });
    svg.setAttribute("width", labelW + barW + 50);
    svg.setAttribute("height", y + 4);
    el.innerHTML = "";
    el.appendChild(svg);
    el.dataset.bars = String(svg.querySelectorAll("rect").length);
  }

  function make(el, d) {
    var data = build(d);
    var width = Math.max(240, el.clientWidth || 600);
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
      hooks: { draw: [markers(d)], drawClear: [shade(d)] },
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
    root.querySelectorAll("[data-importance]").forEach(function (el) {
      var src = document.getElementById(el.dataset.importance);
      if (src) importance(el, JSON.parse(src.textContent));
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
