/**
 * The SVG charts of the benchmarks, plain SVG with no script and no external reference, so
 * docs/benchmarks.md can show them as images. Two kinds of panel, laid out in one grid:
 *   - bars ({@link ChartPanel}): `npm run bench` draws one per figure (TCP one stream and four
 *     streams each way, UDP packets/s at two sizes, ping, CPU per GB), one bar per data path.
 *     Each panel's scale is set by the tunnels; the plaintext veth row (the ceiling, often ten
 *     times the tunnels) is drawn cut at the panel's edge with its value printed, so the tunnels
 *     stay readable side by side;
 *   - lines ({@link LinePanel}): the control-plane scale bench draws join and rotation time
 *     against node count, one line per series, with the target as a dashed line.
 */

/** One bar: a data path's value in a panel (undefined: not measured or failed). */
export interface ChartBar {
  readonly label: string;
  readonly value: number | undefined;
  /** The ceiling row: excluded from the panel's scale and cut at its edge. */
  readonly ceiling?: boolean;
}

/** One panel of bars with a title and a unit. */
export interface ChartPanel {
  readonly title: string;
  readonly unit: string;
  /** "higher" or "lower" is better, printed under the title. */
  readonly better: "higher" | "lower";
  readonly bars: readonly ChartBar[];
  /** Digits after the point in the printed values. Default 0. */
  readonly digits?: number;
}

/** One line of a {@link LinePanel}: y at each x (undefined: not measured or failed). */
export interface ChartSeries {
  readonly label: string;
  readonly points: ReadonlyArray<readonly [x: number, y: number | undefined]>;
}

/** A panel of lines over a shared numeric x axis (both axes from 0). */
export interface LinePanel {
  readonly title: string;
  /** The y axis' unit. */
  readonly unit: string;
  readonly xLabel: string;
  readonly series: readonly ChartSeries[];
  /** A horizontal line at this y (a target), labelled. */
  readonly target?: { readonly y: number; readonly label: string };
  /** Digits after the point in the printed values. Default 0. */
  readonly digits?: number;
}

const COLORS = ["#1f6feb", "#8250df", "#bf3989", "#6e7781", "#2da44e", "#d4a72c"];
const PANEL_W = 330;
const BAR_H = 18;
const GAP = 6;
const LABEL_W = 110;
const VALUE_W = 70;
const COLUMNS = 3;
/** A line panel's plot area. */
const PLOT_H = 150;
const PLOT_LEFT = 44;
const LEGEND_LINE_H = 16;

const escape = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function format(v: number, digits: number): string {
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Height of a panel's drawing, title included. */
function panelHeight(panel: ChartPanel | LinePanel): number {
  if ("series" in panel) return 44 + PLOT_H + 30 + panel.series.length * LEGEND_LINE_H + 10;
  return 44 + Math.max(1, panel.bars.length) * (BAR_H + GAP) + 10;
}

/** "Nice" upper bound of an axis: 1, 2 or 5 times a power of ten, at least `v`. */
function axisMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v) ?? 10) * p;
}

/** A bar panel's drawing at (x0, y0). */
function drawBars(out: string[], panel: ChartPanel, x0: number, y0: number): void {
  const digits = panel.digits ?? 0;
  const scaleOf = panel.bars.filter((b) => !b.ceiling && b.value !== undefined).map((b) => b.value!);
  const max = Math.max(...(scaleOf.length > 0 ? scaleOf : panel.bars.map((b) => b.value ?? 0)), 1e-9);
  const barMax = PANEL_W - LABEL_W - VALUE_W - 10;
  out.push(
    `<text x="${x0}" y="${y0 + 14}" font-weight="bold">${escape(panel.title)}</text>`,
    `<text x="${x0}" y="${y0 + 30}" fill="#57606a" font-size="11">${escape(panel.unit)}, ${panel.better} is better</text>`,
  );
  panel.bars.forEach((bar, j) => {
    const y = y0 + 40 + j * (BAR_H + GAP);
    out.push(
      `<text x="${x0}" y="${y + 13}" fill="#24292f">${escape(bar.label)}</text>`,
      `<rect x="${x0 + LABEL_W}" y="${y}" width="${barMax}" height="${BAR_H}" fill="#f6f8fa"/>`,
    );
    if (bar.value === undefined) {
      out.push(`<text x="${x0 + LABEL_W + 4}" y="${y + 13}" fill="#cf222e">failed</text>`);
      return;
    }
    const cut = bar.value > max;
    const w = Math.max(1, Math.round((Math.min(bar.value, max) / max) * barMax));
    out.push(
      `<rect x="${x0 + LABEL_W}" y="${y}" width="${w}" height="${BAR_H}" fill="${COLORS[j % COLORS.length]}"/>`,
    );
    if (cut) {
      const cx = x0 + LABEL_W + w - 12;
      out.push(
        `<path d="M${cx} ${y - 1} l6 ${BAR_H + 2} M${cx + 5} ${y - 1} l6 ${BAR_H + 2}" stroke="#ffffff" stroke-width="3"/>`,
      );
    }
    out.push(
      `<text x="${x0 + LABEL_W + barMax + 6}" y="${y + 13}" fill="#24292f">${escape(format(bar.value, digits))}</text>`,
    );
  });
}

/** A line panel's drawing at (x0, y0): axes from 0, a point and its value at each measurement. */
function drawLines(out: string[], panel: LinePanel, x0: number, y0: number): void {
  const digits = panel.digits ?? 0;
  const xs = panel.series.flatMap((s) => s.points.map(([x]) => x));
  const ys = panel.series.flatMap((s) => s.points.flatMap(([, y]) => (y === undefined ? [] : [y])));
  const xMax = axisMax(Math.max(...xs, 1));
  const yMax = axisMax(Math.max(...ys, (panel.target?.y ?? 0) * 1.1, 1e-9));
  const left = x0 + PLOT_LEFT;
  const top = y0 + 40;
  const w = PANEL_W - PLOT_LEFT - 20;
  const px = (x: number): number => Math.round(left + (x / xMax) * w);
  const py = (y: number): number => Math.round(top + PLOT_H - (y / yMax) * PLOT_H);
  out.push(
    `<text x="${x0}" y="${y0 + 14}" font-weight="bold">${escape(panel.title)}</text>`,
    `<text x="${x0}" y="${y0 + 30}" fill="#57606a" font-size="11">${escape(panel.unit)}, lower is better</text>`,
    `<rect x="${left}" y="${top}" width="${w}" height="${PLOT_H}" fill="#f6f8fa"/>`,
  );
  for (const f of [0, 0.5, 1]) {
    out.push(
      `<text x="${left - 4}" y="${py(f * yMax) + 4}" text-anchor="end" fill="#57606a" font-size="10">${escape(format(f * yMax, yMax < 10 ? 1 : 0))}</text>`,
      `<text x="${px(f * xMax)}" y="${top + PLOT_H + 14}" text-anchor="middle" fill="#57606a" font-size="10">${escape(format(f * xMax, 0))}</text>`,
    );
  }
  out.push(
    `<text x="${left + w}" y="${top + PLOT_H + 26}" text-anchor="end" fill="#57606a" font-size="10">${escape(panel.xLabel)}</text>`,
  );
  if (panel.target !== undefined) {
    const y = py(panel.target.y);
    out.push(
      `<path d="M${left} ${y} h${w}" stroke="#cf222e" stroke-dasharray="4 3"/>`,
      `<text x="${left + w - 4}" y="${y + 12}" text-anchor="end" fill="#cf222e" font-size="10">${escape(panel.target.label)}</text>`,
    );
  }
  panel.series.forEach((s, j) => {
    const color = COLORS[j % COLORS.length]!;
    const pts = s.points.filter((p): p is readonly [number, number] => p[1] !== undefined);
    if (pts.length > 1)
      out.push(
        `<polyline points="${pts.map(([x, y]) => `${px(x)},${py(y)}`).join(" ")}" fill="none" stroke="${color}" stroke-width="2"/>`,
      );
    for (const [x, y] of pts)
      out.push(
        `<circle cx="${px(x)}" cy="${py(y)}" r="3" fill="${color}"/>`,
        `<text x="${px(x) - 4}" y="${py(y) - 6}" text-anchor="end" fill="${color}" font-size="10">${escape(format(y, digits))}</text>`,
      );
    const ly = top + PLOT_H + 30 + (j + 1) * LEGEND_LINE_H - 4;
    const failed = s.points.some(([, y]) => y === undefined) ? " (failed at some sizes)" : "";
    out.push(
      `<path d="M${left} ${ly - 4} h16" stroke="${color}" stroke-width="2"/>`,
      `<text x="${left + 22}" y="${ly}" fill="#24292f">${escape(s.label + failed)}</text>`,
    );
  });
}

/** Renders the panels in a grid of three columns under `title` and `subtitle`; returns the SVG text. */
export function renderChart(
  title: string,
  subtitle: string,
  panels: ReadonlyArray<ChartPanel | LinePanel>,
): string {
  const columns = Math.min(COLUMNS, Math.max(1, panels.length));
  const rows = Math.ceil(panels.length / columns);
  const panelH = Math.max(...panels.map(panelHeight), 0);
  const width = columns * PANEL_W + 20;
  const height = 60 + rows * panelH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="16" font-weight="bold">${escape(title)}</text>`,
    `<text x="10" y="42" fill="#57606a">${escape(subtitle)}</text>`,
  ];
  panels.forEach((panel, i) => {
    const x0 = 10 + (i % columns) * PANEL_W;
    const y0 = 60 + Math.floor(i / columns) * panelH;
    if ("series" in panel) drawLines(out, panel, x0, y0);
    else drawBars(out, panel, x0, y0);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
