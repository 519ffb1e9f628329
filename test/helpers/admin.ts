/** The admin port as an operator's tooling sees it: /readyz bodies (narrowed), raw /metrics scrapes with their `# TYPE`s, and log-line waits. */
import assert from 'node:assert/strict';
import type { LogLine, RunningBridge } from './bridge.js';
import { waitUntil } from './poll.js';
import { parseExposition, type Sample } from './metrics.js';

export interface WorkerReadyz {
  readonly slot: number;
  readonly pid: number | undefined;
  readonly ready: boolean;
  readonly reasons: readonly string[];
}

export interface Readyz {
  readonly status: number;
  readonly contentType: string | null;
  readonly cacheControl: string | null;
  readonly ready: boolean;
  readonly workers: readonly WorkerReadyz[];
}

/** Narrows one /readyz answer, asserting the documented JSON shape on the way. */
function parseReadyz(status: number, headers: Headers, body: unknown): Readyz {
  assert.ok(
    typeof body === 'object' && body !== null,
    `/readyz body is an object: ${JSON.stringify(body)}`,
  );
  assert.ok(
    'ready' in body && typeof body.ready === 'boolean',
    `/readyz has ready: ${JSON.stringify(body)}`,
  );
  assert.ok(
    'workers' in body && Array.isArray(body.workers),
    `/readyz has workers[]: ${JSON.stringify(body)}`,
  );
  const workers = body.workers.map((w: unknown): WorkerReadyz => {
    assert.ok(typeof w === 'object' && w !== null, 'worker entry is an object');
    assert.ok(
      'slot' in w && typeof w.slot === 'number',
      `worker entry has slot: ${JSON.stringify(w)}`,
    );
    assert.ok(
      'ready' in w && typeof w.ready === 'boolean',
      `worker entry has ready: ${JSON.stringify(w)}`,
    );
    assert.ok(
      'reasons' in w &&
        Array.isArray(w.reasons) &&
        w.reasons.every((r: unknown): r is string => typeof r === 'string'),
      `worker entry has reasons[]: ${JSON.stringify(w)}`,
    );
    const pid = 'pid' in w && typeof w.pid === 'number' ? w.pid : undefined;
    return { slot: w.slot, pid, ready: w.ready, reasons: w.reasons };
  });
  return {
    status,
    contentType: headers.get('content-type'),
    cacheControl: headers.get('cache-control'),
    ready: body.ready,
    workers,
  };
}

export async function getReadyz(bridge: RunningBridge): Promise<Readyz> {
  const res = await fetch(`${bridge.adminUrl}/readyz`);
  return parseReadyz(res.status, res.headers, await res.json());
}

/** Polls /readyz until `accept` holds; throws with the last body after `timeoutMs`. */
export async function waitForReadyz(
  bridge: RunningBridge,
  accept: (r: Readyz) => boolean,
  timeoutMs = 15_000,
): Promise<Readyz> {
  return waitUntil('/readyz to match', () => getReadyz(bridge), accept, { timeoutMs });
}

export interface Scrape {
  readonly contentType: string | null;
  readonly text: string;
  readonly samples: readonly Sample[];
  /** Metric family name → `# TYPE` (counter, gauge, histogram…). */
  readonly types: ReadonlyMap<string, string>;
}

/** GET /metrics, optionally with an Accept header; asserts 200. */
export async function scrapeText(
  adminUrl: string,
  accept?: string,
  signal?: AbortSignal,
): Promise<Scrape> {
  const init: RequestInit = {};
  if (accept !== undefined) init.headers = { Accept: accept };
  if (signal !== undefined) init.signal = signal;
  const res = await fetch(`${adminUrl}/metrics`, init);
  const text = await res.text();
  assert.equal(res.status, 200, `/metrics: ${text.slice(0, 300)}`);
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) types.set(m[1], m[2]);
  }
  return {
    contentType: res.headers.get('content-type'),
    text,
    samples: parseExposition(text),
    types,
  };
}

/** The `# TYPE` of the family a text-format sample belongs to (histograms' _bucket/_sum/_count). */
export function typeOfSample(scrape: Scrape, name: string): string | undefined {
  const direct = scrape.types.get(name);
  if (direct !== undefined) return direct;
  const family = name.replace(/_(bucket|sum|count)$/, '');
  const t = scrape.types.get(family);
  return t === 'histogram' || t === 'summary' ? t : undefined;
}

/** `name{a="x",…}`: a stable key for a sample. */
export function sampleKey(s: Sample): string {
  const labels = Object.keys(s.labels)
    .sort()
    .map((k) => `${k}="${s.labels[k] ?? ''}"`)
    .join(',');
  return `${s.name}{${labels}}`;
}

/** The value of the one sample with exactly these labels; 0 when absent (a counter not yet touched). */
export function valueOf(
  scrape: Scrape,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const key = sampleKey({ name, labels, value: 0 });
  const found = scrape.samples.filter((s) => sampleKey(s) === key);
  assert.ok(found.length <= 1, `${found.length} samples for ${key}`);
  return found[0]?.value ?? 0;
}

/** Every sample of one metric name as `labelsKey → value`, e.g. `{route="a",status="202"} → 3`. */
export function seriesOf(scrape: Scrape, name: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of scrape.samples)
    if (s.name === name) out.set(sampleKey(s).slice(name.length), s.value);
  return out;
}

/** Resolves with the first log line at or after index `from` that matches. */
export function logAfter(
  bridge: RunningBridge,
  from: number,
  match: (l: LogLine) => boolean,
  timeoutMs = 15_000,
): Promise<LogLine> {
  return bridge.waitForLog((l) => bridge.logs.indexOf(l) >= from && match(l), timeoutMs);
}

/** Resolves once `count(bridge.logs)` (re-evaluated per new line) reaches `n`. */
export async function waitForLogCount(
  bridge: RunningBridge,
  match: (l: LogLine) => boolean,
  n: number,
  timeoutMs = 15_000,
): Promise<void> {
  await bridge.waitForLog(() => bridge.logs.filter(match).length >= n, timeoutMs);
}
