/** Reads the admin port's /metrics: a Prometheus text-format (0.0.4) parser and sample look-ups by name and exact label set. */
import { waitUntil } from './poll.js';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Like Prometheus' own parser (Go's strconv.ParseFloat): NaN and Inf in any case, e.g. prom-client's `Nan`. */
function parseValue(text: string, line: string): number {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special !== null) {
    if (special[2]?.toLowerCase() === 'nan') return NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  const n = Number(text);
  if (text === '' || Number.isNaN(n)) throw new Error(`bad sample value "${text}" in: ${line}`);
  return n;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** One sample line: `name{a="x",b="y"} value [timestamp]`, label values with \\ \" \n escapes. */
function parseSampleLine(line: string): Sample {
  const nameMatch = NAME.exec(line);
  if (nameMatch === null) throw new Error(`no metric name in: ${line}`);
  const name = nameMatch[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i += 1;
    for (;;) {
      while (line[i] === ' ') i += 1;
      if (line[i] === '}') {
        i += 1;
        break;
      }
      const labelMatch = LABEL_NAME.exec(line.slice(i));
      if (labelMatch === null) throw new Error(`bad label name at ${i} in: ${line}`);
      const labelName = labelMatch[0];
      i += labelName.length;
      while (line[i] === ' ') i += 1;
      if (line[i] !== '=') throw new Error(`expected = at ${i} in: ${line}`);
      i += 1;
      while (line[i] === ' ') i += 1;
      if (line[i] !== '"') throw new Error(`expected " at ${i} in: ${line}`);
      i += 1;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
        i += 1;
        if (c === '"') break;
        if (c === '\\') {
          const e = line[i];
          i += 1;
          if (e === 'n') value += '\n';
          else if (e === '\\' || e === '"') value += e;
          else throw new Error(`bad escape \\${String(e)} in: ${line}`);
        } else {
          value += c;
        }
      }
      if (labelName in labels) throw new Error(`label ${labelName} repeated in: ${line}`);
      labels[labelName] = value;
      while (line[i] === ' ') i += 1;
      if (line[i] === ',') i += 1;
      else if (line[i] !== '}') throw new Error(`expected , or } at ${i} in: ${line}`);
    }
  }
  const rest = line
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  if (rest.length < 1 || rest.length > 2)
    throw new Error(`expected "value [timestamp]" in: ${line}`);
  return { name, labels, value: parseValue(rest[0] ?? '', line) };
}

/** Every sample of an exposition; `#` lines (HELP, TYPE, comments) and blank lines are skipped. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    samples.push(parseSampleLine(line));
  }
  return samples;
}

function sameLabels(
  a: Readonly<Record<string, string>>,
  b: Readonly<Record<string, string>>,
): boolean {
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && b[k] === a[k])
  );
}

/** The sample with exactly this name and label set (no more, no fewer labels), if present. */
function findSample(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Sample | undefined {
  const found = samples.filter((s) => s.name === name && sameLabels(s.labels, labels));
  if (found.length > 1)
    throw new Error(`${found.length} samples of ${name} with labels ${JSON.stringify(labels)}`);
  return found[0];
}

/** A counter's value in parsed samples: 0 when the series does not exist (never incremented). */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  return findSample(samples, name, labels)?.value ?? 0;
}

/** GET /metrics on the admin URL and parse it. */
async function scrape(adminUrl: string): Promise<Sample[]> {
  const res = await fetch(`${adminUrl}/metrics`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${text.slice(0, 300)}`);
  return parseExposition(text);
}

/** One sample's value, or undefined when the series does not exist (a counter never incremented). */
export async function metricValue(
  adminUrl: string,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Promise<number | undefined> {
  return findSample(await scrape(adminUrl), name, labels)?.value;
}

/**
 * Polls /metrics until the sample satisfies `accept` (undefined: the series is absent) and returns
 * its value; throws with the last value seen after `timeoutMs`.
 */
export async function waitForMetric(
  adminUrl: string,
  name: string,
  labels: Readonly<Record<string, string>>,
  accept: (value: number | undefined) => boolean,
  timeoutMs = 10_000,
): Promise<number | undefined> {
  return waitUntil(
    `${name}${JSON.stringify(labels)}`,
    () => metricValue(adminUrl, name, labels),
    accept,
    { timeoutMs },
  );
}
