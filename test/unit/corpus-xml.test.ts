/** Runs every file of the shared partner-XML corpus through XmlChecker and checks the outcome the MANIFEST's columns imply. */

import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { XmlError, type XmlRejectReason } from '../../src/shared/errors.js';
import { XmlChecker, type XmlSummary } from '../../src/worker/xml/check.js';
import { canonicalLabel, createDecoder, sniffEncoding } from '../../src/worker/xml/encoding.js';

// Compiled to dist/test/unit/: three levels up is the project root.
const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CORPUS = path.resolve(PROJECT_ROOT, '..', 'shared', 'corpus');

interface ManifestRow {
  readonly file: string;
  readonly family: string;
  readonly root: string;
  readonly encoding: string;
  readonly doctype: string;
  readonly wellFormed: string;
  readonly bytes: number;
  readonly notes: string;
}

type Expectation = { readonly accept: true } | { readonly accept: false; readonly reason: XmlRejectReason | 'any' };

/** Parses the "## Files" table, addressing columns by their header names. */
function readManifest(): ManifestRow[] {
  const lines = readFileSync(path.join(CORPUS, 'MANIFEST.md'), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.trim() === '## Files');
  assert.ok(start >= 0, 'MANIFEST.md has no "## Files" section');
  const table: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('#')) break;
    if (!line.startsWith('|')) continue;
    table.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
  }
  const [header, , ...rows] = table;
  assert.ok(header !== undefined, 'the Files table has no header');
  const column = (name: string): number => {
    const index = header.indexOf(name);
    assert.ok(index >= 0, `the Files table has no "${name}" column`);
    return index;
  };
  const c = {
    file: column('file'),
    family: column('family'),
    root: column('root element'),
    encoding: column('encoding'),
    doctype: column('DOCTYPE'),
    wellFormed: column('well-formed'),
    bytes: column('bytes'),
    notes: column('notes'),
  };
  return rows.map((cells) => {
    const cell = (i: number): string => cells[i] ?? '';
    return {
      file: cell(c.file),
      family: cell(c.family),
      root: cell(c.root),
      encoding: cell(c.encoding),
      doctype: cell(c.doctype),
      wellFormed: cell(c.wellFormed),
      bytes: Number(cell(c.bytes)),
      notes: cell(c.notes),
    };
  });
}

/**
 * WHATWG's Shift_JIS decoder is the Windows-31J/CP932 superset, so CP932-only bytes under a
 * Shift_JIS declaration decode (as Java/.NET do) although libxml2's stricter iconv marked the
 * file not well-formed.
 */
function isCp932UnderShiftJis(row: ManifestRow): boolean {
  const text = `${row.encoding} ${row.notes}`;
  return /cp932/i.test(text) && /shift_jis/i.test(row.encoding);
}

/** The outcome the manifest's columns imply under the bridge's policy. */
function expectedOutcome(row: ManifestRow, allowDoctype: boolean): Expectation {
  const wellFormed = row.wellFormed.startsWith('y') || isCp932UnderShiftJis(row);
  if (!wellFormed) return { accept: false, reason: 'any' };
  const doctype = row.doctype.toLowerCase();
  if (doctype === 'n') return { accept: true };
  if (!doctype.startsWith('y')) throw new Error(`${row.file}: unknown DOCTYPE column ${JSON.stringify(row.doctype)}`);
  // An internal subset is refused whatever the route allows, even next to an external id.
  if (doctype.includes('internal')) return { accept: false, reason: 'doctype' };
  if (doctype.includes('external') || doctype.includes('system') || doctype.includes('public')) {
    return allowDoctype ? { accept: true } : { accept: false, reason: 'doctype' };
  }
  throw new Error(`${row.file}: unknown DOCTYPE kind ${JSON.stringify(row.doctype)}`);
}

/** The encoding the bytes are in, per the manifest's encoding column ("GBK; decl …", "UTF-8 (BOM); …"). */
function manifestEncoding(row: ManifestRow): { label: string; bom: boolean } {
  const bytesPart = row.encoding.split(';')[0] ?? '';
  const bom = /\(BOM\)/.test(bytesPart);
  const name = bytesPart.replace(/\s*\(BOM\)/, '').replace(/\s+declared,.*$/, '').trim();
  return { label: canonicalLabel(name, `the manifest row of ${row.file}`), bom };
}

function run(body: Uint8Array, allowDoctype: boolean, chunkSize?: number): XmlSummary {
  const checker = new XmlChecker({ maxDepth: 256, allowDoctype, extract: [] });
  if (chunkSize === undefined) {
    checker.feed(body);
  } else {
    // One reused scratch buffer, overwritten after each feed, as the socket layer does.
    const scratch = new Uint8Array(chunkSize);
    for (let at = 0; at < body.length; at += chunkSize) {
      const piece = body.subarray(at, at + chunkSize);
      scratch.set(piece);
      checker.feed(scratch.subarray(0, piece.length));
      scratch.fill(0);
    }
  }
  return checker.end();
}

function assertRoot(row: ManifestRow, root: string, how: string): void {
  const cut = row.root.indexOf('…');
  if (cut < 0) {
    assert.equal(root, row.root, `${row.file} (${how}): root element`);
    return;
  }
  // The manifest shortens long names as "prefix…(N chars)".
  assert.ok(root.startsWith(row.root.slice(0, cut)), `${row.file} (${how}): root ${root.slice(0, 40)}… does not start with ${row.root.slice(0, cut)}`);
  const length = /…\((\d+) chars\)/.exec(row.root)?.[1];
  if (length !== undefined) assert.equal(root.length, Number(length), `${row.file} (${how}): root name length`);
}

function bytesContain(haystack: Uint8Array, needle: readonly number[]): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

if (!existsSync(CORPUS)) {
  describe('partner XML corpus', () => {
    it('corpus present', (t) => {
      t.skip(`${CORPUS} not found: corpus tests need the shared corpus (present in CI)`);
    });
  });
} else {
  const rows = readManifest();

  describe('partner XML corpus: manifest', () => {
    it('lists every corpus file, with its byte count', () => {
      const onDisk = readdirSync(CORPUS, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile() && e.name !== 'MANIFEST.md')
        .map((e) => path.relative(CORPUS, path.join(e.parentPath, e.name)))
        .sort();
      assert.deepEqual(rows.map((r) => r.file).sort(), onDisk);
      for (const row of rows) {
        assert.equal(readFileSync(path.join(CORPUS, row.file)).length, row.bytes, `${row.file}: bytes column`);
      }
    });
  });

  const families = [...new Set(rows.map((r) => r.family))];
  for (const family of families) {
    describe(`partner XML corpus: ${family}`, () => {
      for (const row of rows.filter((r) => r.family === family)) {
        it(row.file, () => {
          const body = readFileSync(path.join(CORPUS, row.file));
          for (const allowDoctype of [false, true]) {
            const expected = expectedOutcome(row, allowDoctype);
            for (const chunkSize of [undefined, 7]) {
              const how = `allowDoctype=${allowDoctype}, ${chunkSize === undefined ? 'whole' : `${chunkSize}-byte chunks`}`;
              if (expected.accept) {
                let summary: XmlSummary;
                try {
                  summary = run(body, allowDoctype, chunkSize);
                } catch (err) {
                  assert.fail(`${row.file} (${how}) should be accepted, got ${err instanceof XmlError ? `${err.reason}: ${err.message}` : String(err)}`);
                }
                assertRoot(row, summary.root, how);
              } else {
                assert.throws(
                  () => run(body, allowDoctype, chunkSize),
                  (err) => {
                    assert.ok(err instanceof XmlError, `${row.file} (${how}): expected XmlError, got ${String(err)}`);
                    if (expected.reason !== 'any') assert.equal(err.reason, expected.reason, `${row.file} (${how}): ${err.message}`);
                    return true;
                  },
                  `${row.file} (${how}) should be refused`,
                );
              }
            }
          }

          if (!expectedOutcome(row, true).accept) return;
          // Decode exactly as the checker does: the sniffed encoding must be the manifest's, and a
          // fatal decoder must not have produced U+FFFD the file does not spell out itself.
          const sniffed = sniffEncoding(body, undefined, true);
          assert.ok(sniffed !== 'need-more');
          const truth = manifestEncoding(row);
          assert.equal(sniffed.label, truth.label, `${row.file}: sniffed encoding vs manifest "${row.encoding}"`);
          assert.equal(sniffed.source === 'bom', truth.bom, `${row.file}: BOM detection`);
          const text = createDecoder(sniffed).decode(body);
          if (text.includes('\ufffd')) {
            assert.ok(bytesContain(body, [0xef, 0xbf, 0xbd]), `${row.file}: U+FFFD in the decoded text but not in the file`);
          }
        });
      }
    });
  }
}
