/** A self-contained SVG: grouped bars of throughput and p99 latency per scenario, connection count and stack (log scales). */
import type { Cell } from './report.js';

const PALETTE: Readonly<Record<string, string>> = {
  bridge: '#d62728',
  fastify: '#1f77b4',
  'uws-hello': '#7f7f7f',
  'raw-publisher': '#2ca02c',
  'raw-publisher-bare': '#98df8a',
  'raw-rpc': '#bcbd22',
  tornado: '#c5b0d5',
  'tornado+confirms': '#9467bd',
  'tornado+get': '#5b2c8f',
  'gevent-flask': '#c49c94',
  'gevent-flask+confirms': '#8c564b',
  'gevent-flask+get': '#4e2f26',
  'gunicorn-flask': '#f7b6d2',
  'gunicorn-flask+confirms': '#e377c2',
  'gunicorn-flask+get': '#9c3f7a',
};

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const short = (n: number): string =>
  n >= 10_000
    ? `${(n / 1000).toFixed(0)}k`
    : n >= 1000
      ? `${(n / 1000).toFixed(1)}k`
      : n >= 10
        ? n.toFixed(0)
        : n.toFixed(1);

interface Panel {
  readonly title: string;
  readonly value: (c: Cell) => number;
  readonly unit: string;
}

export function chartSvg(cells: readonly Cell[], title: string): string {
  const groups: Array<{ label: string; sub: string; cells: Cell[] }> = [];
  for (const cell of cells) {
    const label = cell.scenario.short;
    const sub = `c${cell.conns.toLocaleString('en-US')}`;
    let g = groups.find((x) => x.label === label && x.sub === sub);
    if (g === undefined) {
      g = { label, sub, cells: [] };
      groups.push(g);
    }
    g.cells.push(cell);
  }
  const stacks = [...new Map(cells.map((c) => [c.spec.id, c.spec.label])).entries()];
  const barW = 12;
  const groupGap = 26;
  const left = 64;
  const panelH = 260;
  const width = Math.max(
    600,
    left + groups.reduce((w, g) => w + g.cells.length * barW + groupGap, 0) + 20,
  );
  const legendColumns = Math.max(1, Math.floor((width - left) / 260));
  const top = 40 + Math.ceil(stacks.length / legendColumns) * 18;
  const panels: Panel[] = [
    { title: 'requests/s (median, log scale)', value: (c) => c.rps, unit: 'req/s' },
    { title: 'p99 latency, ms (median, log scale)', value: (c) => c.p99, unit: 'ms' },
  ];
  const height = top + panels.length * (panelH + 90) + 10;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  out.push(`<text x="${left}" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`);
  stacks.forEach(([id, label], i) => {
    const x = left + (i % legendColumns) * 260;
    const y = 38 + Math.floor(i / legendColumns) * 18;
    out.push(
      `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${PALETTE[id] ?? '#17becf'}"/><text x="${x + 16}" y="${y}">${esc(label)}</text>`,
    );
  });
  panels.forEach((panel, pi) => {
    const y0 = top + pi * (panelH + 90) + 20;
    const values = cells.map(panel.value).filter((v) => Number.isFinite(v) && v > 0);
    const hi = Math.ceil(Math.log10(Math.max(10, ...values)));
    const lo = Math.min(hi - 1, Math.floor(Math.log10(Math.min(...values, 10 ** hi))));
    const y = (v: number): number => y0 + panelH - ((Math.log10(v) - lo) / (hi - lo)) * panelH;
    out.push(`<text x="${left}" y="${y0 - 8}" font-weight="bold">${esc(panel.title)}</text>`);
    for (let e = lo; e <= hi; e++) {
      out.push(
        `<line x1="${left}" x2="${width - 20}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#ddd"/>`,
      );
      out.push(
        `<text x="${left - 6}" y="${y(10 ** e) + 4}" text-anchor="end">${short(10 ** e)}</text>`,
      );
    }
    let x = left + groupGap / 2;
    for (const g of groups) {
      const gx = x;
      for (const cell of g.cells) {
        const v = panel.value(cell);
        if (Number.isFinite(v) && v > 0) {
          const by = Math.min(y(v), y0 + panelH - 1);
          out.push(
            `<rect x="${x}" y="${by}" width="${barW - 2}" height="${y0 + panelH - by}" fill="${PALETTE[cell.spec.id] ?? '#17becf'}"><title>${esc(`${cell.spec.label}, ${g.label} ${g.sub}: ${short(v)} ${panel.unit}`)}</title></rect>`,
          );
          out.push(
            `<text transform="translate(${x + barW / 2 + 3},${by - 3}) rotate(-90)" font-size="9">${short(v)}</text>`,
          );
        } else {
          out.push(`<text x="${x + 1}" y="${y0 + panelH - 3}" font-size="9" fill="#999">×</text>`);
        }
        x += barW;
      }
      out.push(
        `<text x="${(gx + x) / 2}" y="${y0 + panelH + 14}" text-anchor="middle">${esc(g.label)}</text>`,
      );
      out.push(
        `<text x="${(gx + x) / 2}" y="${y0 + panelH + 27}" text-anchor="middle" fill="#555">${esc(g.sub)}</text>`,
      );
      x += groupGap;
    }
    out.push(
      `<line x1="${left}" x2="${width - 20}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#333"/>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
