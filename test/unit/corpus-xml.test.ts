/** Runs every file of the shared partner-XML corpus through XmlChecker and checks the outcome the MANIFEST's columns imply. */

import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { XmlError, type XmlRejectReason } from '../../src/shared/errors.js';
import { XmlChecker, type XmlSummary } from '../../src/worker/xml/check.js';
import { canonicalLabel, createDecoder, sniffEncoding } from '../../src/worker/xml/encoding.js';
import {
  assertRootMatches,
  CORPUS,
  decodedDespiteXmllint,
  readManifest,
  type ManifestRow,
} from '../helpers/corpus-manifest.js';

type Expectation =
  { readonly accept: true } | { readonly accept: false; readonly reason: XmlRejectReason | 'any' };

/** The outcome the manifest's columns imply under the bridge's policy. */
function expectedOutcome(row: ManifestRow, allowDoctype: boolean): Expectation {
  const wellFormed = row.wellFormed.startsWith('y') || decodedDespiteXmllint(row);
  if (!wellFormed) return { accept: false, reason: 'any' };
  const doctype = row.doctype.toLowerCase();
  if (doctype === 'n') return { accept: true };
  if (!doctype.startsWith('y'))
    throw new Error(`${row.file}: unknown DOCTYPE column ${JSON.stringify(row.doctype)}`);
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
  const name = bytesPart
    .replace(/\s*\(BOM\)/, '')
    .replace(/\s+declared,.*$/, '')
    .trim();
  return { label: canonicalLabel(name, `the manifest row of ${row.file}`), bom };
}

function run(body: Uint8Array, allowDoctype: boolean, chunkSize?: number): XmlSummary {
  const checker = new XmlChecker({ maxDepth: 256, allowDoctype });
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
  const { rows } = readManifest();

  describe('partner XML corpus: manifest', () => {
    it('lists every corpus file, with its byte count', () => {
      const onDisk = readdirSync(CORPUS, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile() && e.name !== 'MANIFEST.md')
        .map((e) => path.relative(CORPUS, path.join(e.parentPath, e.name)))
        .sort();
      assert.deepEqual(rows.map((r) => r.file).sort(), onDisk);
      for (const row of rows) {
        assert.equal(
          readFileSync(path.join(CORPUS, row.file)).length,
          row.bytes,
          `${row.file}: bytes column`,
        );
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
                  assert.fail(
                    `${row.file} (${how}) should be accepted, got ${err instanceof XmlError ? `${err.reason}: ${err.message}` : String(err)}`,
                  );
                }
                assertRootMatches(summary.root, row.root, `${row.file} (${how})`);
              } else {
                assert.throws(
                  () => run(body, allowDoctype, chunkSize),
                  (err) => {
                    assert.ok(
                      err instanceof XmlError,
                      `${row.file} (${how}): expected XmlError, got ${String(err)}`,
                    );
                    if (expected.reason !== 'any')
                      assert.equal(
                        err.reason,
                        expected.reason,
                        `${row.file} (${how}): ${err.message}`,
                      );
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
          assert.equal(
            sniffed.label,
            truth.label,
            `${row.file}: sniffed encoding vs manifest "${row.encoding}"`,
          );
          assert.equal(sniffed.source === 'bom', truth.bom, `${row.file}: BOM detection`);
          const text = createDecoder(sniffed).decode(body);
          if (text.includes('\ufffd')) {
            assert.ok(
              bytesContain(body, [0xef, 0xbf, 0xbd]),
              `${row.file}: U+FFFD in the decoded text but not in the file`,
            );
          }
        });
      }
    });
  }
}
