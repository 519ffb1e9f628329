/**
 * Micro-benchmark of the XML check over the partner corpus (../shared/corpus, or the folder given
 * as the first argument): µs per document for XmlChecker as built, and for bare saxes with the
 * checker's handlers with `xmlns: false` and `xmlns: true`, to price saxes' own namespace
 * processing (#11, item 6). `--baseline FILE` adds another build's check.js (e.g. the commit
 * before a change, built elsewhere) as a variant.
 *
 * Each measurement runs in a fresh process: saxes keeps its handlers as properties of the parser,
 * so parsers with different handler sets in one process give its hot loop several hidden classes
 * and slow every variant down (measured: bare saxes 67 → 82 µs/doc next to a checker with more
 * handlers). Rounds alternate the variants in rotated order; the median round is reported.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/xml-check-cost.js \
 *     [--baseline /tmp/old/dist/src/worker/xml/check.js] [--rounds 9] [corpus-dir]
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SaxesParser } from 'saxes';
import { BodyDecoder } from '../src/worker/xml/body-decoder.js';
import { XmlChecker } from '../src/worker/xml/check.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SELF = fileURLToPath(import.meta.url);
/** Passes over the corpus per measurement: long enough (≈ 0.2 s) to swamp timer noise. */
const PASSES = 20;
const VARIANT_NAMES = ['checker', 'baseline', 'saxes', 'saxes-xmlns'] as const;
type VariantName = (typeof VARIANT_NAMES)[number];
const LABELS: Record<VariantName, string> = {
  checker: 'XmlChecker (as built)',
  baseline: 'XmlChecker (--baseline)',
  saxes: 'bare saxes, xmlns: false',
  'saxes-xmlns': 'bare saxes, xmlns: true',
};

const args = parseArgs({
  options: {
    baseline: { type: 'string' },
    rounds: { type: 'string', default: '9' },
    variant: { type: 'string' },
  },
  allowPositionals: true,
});
const corpus = path.resolve(
  args.positionals[0] ?? path.join(HERE, '..', '..', '..', 'shared', 'corpus'),
);

interface Doc {
  readonly bytes: Uint8Array;
  readonly text: string;
}

type Check = (bytes: Uint8Array) => void;

function checkWith(Checker: typeof XmlChecker): Check {
  return (bytes) => {
    const checker = new Checker({ maxDepth: 256, allowDoctype: true });
    checker.feed(bytes, true);
    checker.end();
  };
}

/** Another build's XmlChecker class, checked to be a constructor before use. */
async function loadChecker(file: string): Promise<typeof XmlChecker> {
  const mod: unknown = await import(pathToFileURL(path.resolve(file)).href);
  const ctor: unknown =
    typeof mod === 'object' && mod !== null && 'XmlChecker' in mod ? mod.XmlChecker : undefined;
  if (typeof ctor !== 'function') throw new Error(`${file} exports no XmlChecker`);
  // Another build of the same module: its constructor and feed/end have the same shape.
  return ctor as typeof XmlChecker;
}

/** saxes with the handlers the old XmlChecker set (error, doctype, open, close) on decoded text. */
function bareSaxes(text: string, xmlns: boolean): boolean {
  const parser = new SaxesParser({ xmlns, position: true });
  let failed = false;
  let depth = 0;
  parser.on('error', () => {
    failed = true;
  });
  parser.on('doctype', () => undefined);
  parser.on('opentag', () => {
    depth++;
  });
  parser.on('closetag', () => {
    depth--;
  });
  parser.write(text).close();
  return !failed && depth === 0;
}

function succeeds(run: () => unknown): boolean {
  try {
    return run() !== false;
  } catch {
    return false;
  }
}

/**
 * The parent's choice: the files every variant accepts (a refusal stops a parse early and would
 * flatter it). Children only read them, so each runs nothing but its own variant.
 */
async function acceptedFiles(): Promise<string[]> {
  const checks = [checkWith(XmlChecker)];
  if (args.values.baseline !== undefined)
    checks.push(checkWith(await loadChecker(args.values.baseline)));
  return readdirSync(corpus, { recursive: true, encoding: 'utf8' })
    .filter((f) => f !== 'MANIFEST.md' && statSync(path.join(corpus, f)).isFile())
    .sort()
    .filter((f) => {
      const bytes = new Uint8Array(readFileSync(path.join(corpus, f)));
      const text = new BodyDecoder(undefined).decode(bytes, true);
      return (
        checks.every((check) => succeeds(() => check(bytes))) &&
        bareSaxes(text, false) &&
        bareSaxes(text, true)
      );
    });
}

/** Child process: time one variant, print µs per document. */
async function measure(variant: VariantName): Promise<void> {
  const baseline =
    args.values.baseline === undefined
      ? undefined
      : checkWith(await loadChecker(args.values.baseline));
  // The parent sends the file list on stdin.
  const files = JSON.parse(readFileSync(0, 'utf8')) as string[];
  const docs = files.map((f) => {
    const bytes = new Uint8Array(readFileSync(path.join(corpus, f)));
    return { bytes, text: new BodyDecoder(undefined).decode(bytes, true) };
  });
  let run: (d: Doc) => void;
  switch (variant) {
    case 'checker': {
      const check = checkWith(XmlChecker);
      run = (d) => check(d.bytes);
      break;
    }
    case 'baseline': {
      if (baseline === undefined) throw new Error('--variant baseline needs --baseline FILE');
      run = (d) => baseline(d.bytes);
      break;
    }
    case 'saxes':
      run = (d) => void bareSaxes(d.text, false);
      break;
    case 'saxes-xmlns':
      run = (d) => void bareSaxes(d.text, true);
      break;
  }
  // Warm-up: V8 optimises the variant before it is timed.
  for (let pass = 0; pass < 3; pass++) for (const d of docs) run(d);
  const started = process.hrtime.bigint();
  for (let pass = 0; pass < PASSES; pass++) for (const d of docs) run(d);
  const micros = Number(process.hrtime.bigint() - started) / 1e3 / (PASSES * docs.length);
  const bytes = docs.reduce((n, d) => n + d.bytes.length, 0);
  process.stdout.write(`${JSON.stringify({ micros, docs: docs.length, bytes })}\n`);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? NaN)
    : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

function isVariant(name: string): name is VariantName {
  return (VARIANT_NAMES as readonly string[]).includes(name);
}

/** Parent: alternate the variants over rounds, one child process per measurement. */
async function main(): Promise<void> {
  const input = JSON.stringify(await acceptedFiles());
  const rounds = Number(args.values.rounds);
  const variants = VARIANT_NAMES.filter((v) => v !== 'baseline' || args.values.baseline);
  const passOn = [
    ...(args.values.baseline === undefined ? [] : ['--baseline', args.values.baseline]),
    corpus,
  ];
  const samples = new Map<VariantName, number[]>(variants.map((v) => [v, []]));
  let docs = 0;
  let bytes = 0;
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(round + k) % variants.length] as VariantName; // index in range
      const out = execFileSync(process.execPath, [SELF, '--variant', variant, ...passOn], {
        encoding: 'utf8',
        input,
      });
      // This script's own child printed it: {micros, docs, bytes}.
      const result = JSON.parse(out) as { micros: number; docs: number; bytes: number };
      samples.get(variant)?.push(result.micros);
      ({ docs, bytes } = result);
    }
  }
  process.stdout.write(
    `${docs} documents (${bytes} bytes, mean ${Math.round(bytes / docs)}) from ${corpus}; ` +
      `${rounds} rounds, one process per variant and round, ${PASSES} timed passes each\n`,
  );
  const medians = new Map<VariantName, number>();
  for (const v of variants) {
    const all = samples.get(v) ?? [];
    medians.set(v, median(all));
    process.stdout.write(
      `${LABELS[v].padEnd(26)} ${median(all).toFixed(2)} µs/doc  [${all.map((s) => s.toFixed(1)).join(' ')}]\n`,
    );
  }
  const compare = (what: string, after: VariantName, before: VariantName): void => {
    const a = medians.get(after);
    const b = medians.get(before);
    if (a === undefined || b === undefined) return;
    process.stdout.write(
      `${what}: ${(a - b).toFixed(2)} µs/doc (${(((a - b) / b) * 100).toFixed(1)} %)\n`,
    );
  };
  compare('xmlns: true over bare saxes', 'saxes-xmlns', 'saxes');
  compare('XmlChecker as built over --baseline', 'checker', 'baseline');
}

const child = args.values.variant;
if (child === undefined) await main();
else if (isVariant(child)) await measure(child);
else throw new Error(`unknown --variant ${child}: one of ${VARIANT_NAMES.join(', ')}`);
