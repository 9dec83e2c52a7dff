// Charts drawn with the vendored uPlot (global `uPlot`, loaded by index.html). Every axis says
// what it measures and in which unit.

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"];

function fit(el, plot, height) {
  const observer = new ResizeObserver(() => {
    const width = Math.max(200, el.clientWidth);
    if (Math.abs(width - plot.width) > 2) plot.setSize({ width, height });
  });
  observer.observe(el);
  return observer;
}

/**
 * A line chart of numeric x (no time axis).
 * opts: { xLabel, yLabel, series: [{label, stroke?, fill?, dash?, paths?}], data, height?, hooks?,
 *         yMin0?: false to let the y axis leave out zero, xLog?: a logarithmic x axis (x > 0),
 *         xRange?: () => [min, max], a fixed x range asked again at every redraw }
 */
export function lineChart(el, opts) {
  const height = opts.height ?? 220;
  const series = [{ label: opts.xLabel }];
  opts.series.forEach((s, i) => series.push({
    label: s.label, stroke: s.stroke ?? COLORS[i % COLORS.length], width: 1.6,
    fill: s.fill, dash: s.dash, paths: s.paths, points: { show: s.points ?? false }, spanGaps: true,
  }));
  const plot = new uPlot({
    width: Math.max(200, el.clientWidth || 400), height,
    scales: {
      x: opts.xLog ? { time: false, distr: 3, log: 10 }
        : opts.xRange ? { time: false, range: () => opts.xRange() } : { time: false },
      y: opts.yMin0 === false ? {} : { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] },
    },
    axes: [
      { label: opts.xLabel, labelSize: 18, size: 36 },
      { label: opts.yLabel, labelSize: 18, size: 56 },
    ],
    legend: { show: opts.legend ?? true },
    cursor: { drag: { x: false, y: false } },
    series,
    hooks: opts.hooks ?? {},
  }, opts.data, el);
  const observer = fit(el, plot, height);
  return {
    plot,
    setData(data) { plot.setData(data); },
    destroy() { observer.disconnect(); plot.destroy(); },
  };
}

/** A histogram as a filled step line over bin edges (edges.length === counts.length + 1). */
export function histogram(el, { edges, counts, xLabel, yLabel, xLog = false }) {
  const ys = [...counts, 0];
  return lineChart(el, {
    xLabel, yLabel, data: [edges, ys], legend: false, xLog,
    series: [{ label: yLabel, fill: "rgba(37,99,235,0.25)", paths: uPlot.paths.stepped({ align: 1 }) }],
  });
}

/**
 * Shade an x range (the measured window) and the area under a y value (the idle baseline).
 * Returns a uPlot hooks object.
 */
export function shadeHooks({ xRange, yBaseline }) {
  return {
    drawClear: [(u) => {
      const { ctx } = u;
      const { left, top, width, height } = u.bbox;
      ctx.save();
      if (xRange) {
        const x0 = Math.max(left, u.valToPos(xRange[0], "x", true));
        const x1 = Math.min(left + width, u.valToPos(xRange[1], "x", true));
        ctx.fillStyle = "rgba(37,99,235,0.10)";
        ctx.fillRect(x0, top, Math.max(0, x1 - x0), height);
      }
      if (yBaseline !== null && yBaseline !== undefined) {
        const y = u.valToPos(yBaseline, "y", true);
        ctx.fillStyle = "rgba(107,114,128,0.20)";
        ctx.fillRect(left, y, width, top + height - y);
        ctx.strokeStyle = "rgba(75,85,99,0.9)";
        ctx.setLineDash([5, 4]);
        ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
      }
      ctx.restore();
    }],
  };
}
