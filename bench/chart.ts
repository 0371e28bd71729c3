/**
 * The SVG chart of `npm run bench`: one panel per figure (TCP one stream and four streams each way,
 * UDP packets/s at two sizes, ping, CPU per GB), one bar per data path in each. Plain SVG with
 * no script and no external reference, so docs/benchmarks.md can show it as an image.
 *
 * Each panel's scale is set by the tunnels; the plaintext veth row (the ceiling, often ten times
 * the tunnels) is drawn cut at the panel's edge with its value printed, so the tunnels stay
 * readable side by side.
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

const COLORS = ["#1f6feb", "#8250df", "#bf3989", "#6e7781", "#2da44e", "#d4a72c"];
const PANEL_W = 330;
const BAR_H = 18;
const GAP = 6;
const LABEL_W = 110;
const VALUE_W = 70;
const COLUMNS = 3;

const escape = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function format(v: number, digits: number): string {
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Renders the panels in a grid of three columns under `title` and `subtitle`; returns the SVG text. */
export function renderChart(title: string, subtitle: string, panels: readonly ChartPanel[]): string {
  const rows = Math.ceil(panels.length / COLUMNS);
  const barsPerPanel = Math.max(1, ...panels.map((p) => p.bars.length));
  const panelH = 44 + barsPerPanel * (BAR_H + GAP) + 10;
  const width = COLUMNS * PANEL_W + 20;
  const height = 60 + rows * panelH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="16" font-weight="bold">${escape(title)}</text>`,
    `<text x="10" y="42" fill="#57606a">${escape(subtitle)}</text>`,
  ];
  panels.forEach((panel, i) => {
    const x0 = 10 + (i % COLUMNS) * PANEL_W;
    const y0 = 60 + Math.floor(i / COLUMNS) * panelH;
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
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
