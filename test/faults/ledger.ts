/**
 * The fault suite's ledger: what each case's partners were answered, set against what the queue
 * holds, by message_id. `node dist/test/faults/ledger.js [FILE]` prints the last run's table
 * (FILE defaults to $FAULTS_LEDGER, else dist/faults-ledger.json).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { is2xx, type KeyedAnswer } from '../helpers/keyed-load.js';

export interface LedgerRow {
  readonly case: string;
  readonly queueType: string;
  readonly scale: number;
  /** Requests issued (load, slow clients and probes). */
  readonly requests: number;
  /** Answers per HTTP status, e.g. `{ "202": 4100, "503": 310 }`. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Requests without an HTTP answer, per error code (`ECONNRESET`, `ETIMEDOUT`…). */
  readonly errors: Readonly<Record<string, number>>;
  readonly answered2xx: number;
  readonly present2xx: number;
  /** 2xx answered, not in the queue: a lost message. Must be 0. */
  readonly missing2xx: number;
  /** The first few lost keys, for the report. */
  readonly missingKeys: readonly string[];
  /** 2xx in flight while the operator deleted the queue, not in it (dropped with the queue, not lost by the bridge). */
  readonly droppedByDelete: number;
  /** Non-2xx or errored requests whose message is in the queue anyway (outcome unknown: fine). */
  readonly unknownPresent: number;
  /** Messages in the queue beyond the first of their message_id. */
  readonly duplicates: number;
  /** Messages whose message_id no request of the case carried. Must be 0. */
  readonly foreign: number;
  /** From the fault's end to the first fresh 2xx, in ms. */
  readonly recoveryMs: number | undefined;
  /** The case's wall time, in ms. */
  readonly wallMs: number;
  readonly notes: readonly string[];
}

export interface LedgerInput {
  readonly case: string;
  readonly queueType: string;
  readonly scale: number;
  readonly answers: readonly KeyedAnswer[];
  /** message_id of every message drained from the queue, duplicates included. */
  readonly queued: readonly string[];
  readonly recoveryMs: number | undefined;
  readonly wallMs: number;
  readonly notes: readonly string[];
  /** When the operator deleted the queue (performance.now()), if they did. */
  readonly deleteWindow?: { readonly from: number; readonly to: number };
}

const count = (into: Record<string, number>, key: string): void => {
  into[key] = (into[key] ?? 0) + 1;
};

/** Sets the answers against the queue. */
export function computeLedger(input: LedgerInput): LedgerRow {
  const inQueue = new Map<string, number>();
  for (const id of input.queued) inQueue.set(id, (inQueue.get(id) ?? 0) + 1);
  const statuses: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const sent = new Set<string>();
  const missingKeys: string[] = [];
  let answered2xx = 0;
  let present2xx = 0;
  let unknownPresent = 0;
  let droppedByDelete = 0;
  const del = input.deleteWindow;
  for (const a of input.answers) {
    sent.add(a.key);
    if (a.status !== undefined) count(statuses, String(a.status));
    else count(errors, a.error ?? 'UNKNOWN');
    const present = inQueue.has(a.key);
    if (is2xx(a)) {
      answered2xx += 1;
      if (present) present2xx += 1;
      else if (del !== undefined && a.startedAt < del.to && a.endedAt > del.from)
        droppedByDelete += 1;
      else missingKeys.push(a.key);
    } else if (present) unknownPresent += 1;
  }
  let duplicates = 0;
  let foreign = 0;
  for (const [id, n] of inQueue) {
    duplicates += n - 1;
    if (!sent.has(id)) foreign += n;
  }
  return {
    case: input.case,
    queueType: input.queueType,
    scale: input.scale,
    requests: input.answers.length,
    statuses,
    errors,
    answered2xx,
    present2xx,
    missing2xx: missingKeys.length,
    missingKeys: missingKeys.slice(0, 20),
    droppedByDelete,
    unknownPresent,
    duplicates,
    foreign,
    recoveryMs: input.recoveryMs,
    wallMs: input.wallMs,
    notes: input.notes,
  };
}

const HEADER = [
  '| case | queue | requests | 2xx | 502 | 503 | 504 | other statuses | network errors | 2xx present | **2xx missing** | non-2xx present | duplicates | recovery | notes |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
];

const list = (counts: Readonly<Record<string, number>>): string =>
  Object.entries(counts)
    .map(([k, n]) => `${k}×${n}`)
    .join(' ') || '—';

/** One markdown table row for a case. */
export function markdownRow(row: LedgerRow): string {
  const ok = Object.entries(row.statuses)
    .filter(([s]) => s.startsWith('2'))
    .reduce((sum, [, n]) => sum + n, 0);
  const other: Record<string, number> = {};
  for (const [s, n] of Object.entries(row.statuses))
    if (!s.startsWith('2') && !['502', '503', '504'].includes(s)) other[s] = n;
  const cells = [
    row.case,
    row.queueType,
    String(row.requests),
    String(ok),
    String(row.statuses['502'] ?? 0),
    String(row.statuses['503'] ?? 0),
    String(row.statuses['504'] ?? 0),
    list(other),
    list(row.errors),
    String(row.present2xx),
    row.missing2xx === 0 ? '0' : `**${row.missing2xx}**`,
    String(row.unknownPresent),
    String(row.duplicates),
    row.recoveryMs === undefined ? '—' : `${(row.recoveryMs / 1000).toFixed(1)} s`,
    [
      ...(row.droppedByDelete === 0
        ? []
        : [`${row.droppedByDelete} 2xx in flight during the delete went with the queue`]),
      ...row.notes,
    ]
      .join('; ')
      .replaceAll('|', '\\|') || '—',
  ];
  return `| ${cells.join(' | ')} |`;
}

/** The whole table, header included. */
export function markdownTable(rows: readonly LedgerRow[]): string {
  return [...HEADER, ...rows.map(markdownRow)].join('\n');
}

/** Where the machine-readable ledger goes: $FAULTS_LEDGER, else dist/faults-ledger.json. */
export function ledgerPath(): string {
  const fromEnv = process.env['FAULTS_LEDGER'];
  if (fromEnv !== undefined && fromEnv !== '') return path.resolve(fromEnv);
  // this file is compiled to dist/test/faults/
  return path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    '..',
    '..',
    'faults-ledger.json',
  );
}

interface LedgerFile {
  readonly startedAt: string;
  readonly scale: number;
  readonly rows: readonly LedgerRow[];
}

/** Rewrites the ledger file with the rows so far (after every case, so a failed run keeps what it found). */
export function writeLedger(
  file: string,
  startedAt: string,
  scale: number,
  rows: readonly LedgerRow[],
): void {
  const content: LedgerFile = { startedAt, scale, rows };
  writeFileSync(file, `${JSON.stringify(content, null, 2)}\n`);
}

function readLedger(file: string): LedgerFile {
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (
    typeof parsed !== 'object' ||
    parsed === null ||
    !('rows' in parsed) ||
    !Array.isArray(parsed.rows)
  )
    throw new TypeError(`${file} is not a fault ledger`);
  return parsed as LedgerFile; // written by writeLedger above
}

if (
  process.argv[1] !== undefined &&
  path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  const file = process.argv[2] ?? ledgerPath();
  if (!existsSync(file)) {
    process.stderr.write(`no fault ledger at ${file}: run the fault suite first\n`);
    process.exit(1);
  }
  const ledger = readLedger(file);
  process.stdout.write(
    `Fault ledger of the run started ${ledger.startedAt} (FAULTS_SCALE=${ledger.scale}):\n\n${markdownTable(ledger.rows)}\n`,
  );
}
