/**
 * The shared partner corpus (third-party data, read in place from ../shared/corpus, never copied
 * into the project) and its MANIFEST.md "Files" table, parsed by column name.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './bridge.js';

export const CORPUS = path.resolve(PROJECT_ROOT, '..', 'shared', 'corpus');

export interface ManifestRow {
  readonly file: string;
  readonly family: string;
  readonly root: string;
  readonly encoding: string;
  readonly doctype: string;
  readonly wellFormed: string;
  readonly bytes: number;
  readonly notes: string;
}

export interface Manifest {
  readonly rows: readonly ManifestRow[];
  /** From the "Counts" section: "91 files, 638123 bytes in all". */
  readonly totalFiles: number;
  readonly totalBytes: number;
}

function cells(line: string): string[] {
  return line
    .split('|')
    .slice(1, -1)
    .map((c) => c.trim());
}

/** Reads MANIFEST.md; reordered or added columns keep working. */
export function readManifest(): Manifest {
  const text = readFileSync(path.join(CORPUS, 'MANIFEST.md'), 'utf8');
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === '## Files');
  assert.ok(start !== -1, 'MANIFEST.md has no "## Files" section');
  const headerAt = lines.findIndex((l, i) => i > start && l.startsWith('|'));
  const header = cells(lines[headerAt] ?? '');
  const column = (name: string): number => {
    const i = header.indexOf(name);
    assert.ok(i !== -1, `MANIFEST.md Files table has no "${name}" column: ${header.join(' | ')}`);
    return i;
  };
  const at = {
    file: column('file'),
    family: column('family'),
    root: column('root element'),
    encoding: column('encoding'),
    doctype: column('DOCTYPE'),
    wellFormed: column('well-formed'),
    bytes: column('bytes'),
    notes: column('notes'),
  };
  const rows: ManifestRow[] = [];
  // headerAt + 1 is the |---| separator.
  for (let i = headerAt + 2; i < lines.length && (lines[i] ?? '').startsWith('|'); i++) {
    const row = cells(lines[i] ?? '');
    assert.equal(
      row.length,
      header.length,
      `MANIFEST.md line ${i + 1} has ${row.length} cells, not ${header.length}`,
    );
    const get = (j: number): string => row[j] ?? '';
    rows.push({
      file: get(at.file),
      family: get(at.family),
      root: get(at.root),
      encoding: get(at.encoding),
      doctype: get(at.doctype),
      wellFormed: get(at.wellFormed),
      bytes: Number(get(at.bytes)),
      notes: get(at.notes),
    });
  }
  const counts = /^(\d+) files, (\d+) bytes in all/m.exec(text);
  assert.ok(counts, 'MANIFEST.md has no "N files, B bytes in all" line');
  return { rows, totalFiles: Number(counts[1]), totalBytes: Number(counts[2]) };
}

/**
 * Files xmllint (glibc iconv) called not well-formed that the bridge decodes: WHATWG's Shift_JIS
 * decoder is Windows-31J/CP932, so CP932-only bytes (NEC/IBM extensions, lead byte 0x87) under a
 * Shift_JIS declaration decode, as with Java's and .NET's decoders.
 */
export function decodedDespiteXmllint(row: ManifestRow): boolean {
  return /cp932/i.test(`${row.encoding} ${row.notes}`) && /shift_jis/i.test(row.encoding);
}

/** The manifest writes long root names as `prefix…(15253 chars)`. */
export function assertRootMatches(actual: string, manifestRoot: string, what: string): void {
  const cut = manifestRoot.indexOf('…');
  if (cut === -1) {
    assert.equal(actual, manifestRoot, `${what}: root element`);
    return;
  }
  assert.ok(
    actual.startsWith(manifestRoot.slice(0, cut)),
    `${what}: root ${actual.slice(0, 40)}… does not start with ${manifestRoot.slice(0, cut)}`,
  );
  const length = /\((\d+) chars\)/.exec(manifestRoot.slice(cut))?.[1];
  if (length !== undefined) assert.equal(actual.length, Number(length), `${what}: root length`);
}
