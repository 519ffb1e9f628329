/** Every file of the partner corpus (../shared/corpus, read in place) through a strict and an allowDoctype bridge; outcomes derived from MANIFEST.md. */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { GetMessage } from 'amqplib';
import { baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName } from '../helpers/broker.js';
import {
  assertRootMatches,
  CORPUS,
  decodedDespiteXmllint,
  readManifest,
  type ManifestRow,
} from '../helpers/corpus-manifest.js';

const ROUTE = '/corpus';

/** What the encoding column says: `UTF-16LE (BOM); decl "utf-16"`, `UTF-8; no decl`, … */
interface EncodingFacts {
  /** What the bytes are, without the BOM mark. */
  readonly bytes: string;
  readonly bom: boolean;
  /** The XML declaration's encoding label, when it has one. */
  readonly declared: string | undefined;
}

function encodingFacts(column: string): EncodingFacts {
  const semi = column.indexOf(';');
  const bytesPart = semi === -1 ? column : column.slice(0, semi);
  const declPart = semi === -1 ? '' : column.slice(semi + 1);
  return {
    bytes: bytesPart.replace(/\s*\(BOM\)\s*/, '').trim(),
    bom: /\(BOM\)/.test(bytesPart),
    declared: /decl "([^"]+)"/.exec(declPart)?.[1],
  };
}

/**
 * The Content-Types each file is sent with. UTF-8 files: plain `application/xml`. Other files:
 * with their charset; and when the bytes say their encoding themselves (BOM or declaration, which
 * beat Content-Type in encoding.ts's policy) also without a charset and with a wrong one.
 */
function contentTypes(row: ManifestRow): string[] {
  const enc = encodingFacts(row.encoding);
  if (/^utf-8$/i.test(enc.bytes)) return ['application/xml'];
  const variants = [`application/xml; charset=${enc.declared ?? enc.bytes}`];
  if (enc.bom || enc.declared !== undefined)
    variants.push('application/xml', 'application/xml; charset=utf-8');
  return variants;
}

/** The status the contract and the encoding policy give for a file, from its manifest row alone. */
function expectedStatus(row: ManifestRow, allowDoctype: boolean): 202 | 400 {
  const doctype = row.doctype.toLowerCase();
  if (doctype.startsWith('y')) {
    // An internal subset is always refused; an external id only without allowDoctype. Never fetched.
    if (doctype.includes('internal subset')) return 400;
    if (!allowDoctype) return 400;
  } else {
    assert.equal(doctype, 'n', `${row.file}: unknown DOCTYPE value "${row.doctype}"`);
  }
  if (/^y\b/i.test(row.wellFormed)) return 202;
  assert.match(
    row.wellFormed,
    /^n\b/i,
    `${row.file}: unknown well-formed value "${row.wellFormed}"`,
  );
  return decodedDespiteXmllint(row) ? 202 : 400;
}

function corpusFiles(): string[] {
  return readdirSync(CORPUS, { recursive: true, encoding: 'utf8' })
    .filter((f) => f !== 'MANIFEST.md' && statSync(path.join(CORPUS, f)).isFile())
    .map((f) => f.split(path.sep).join('/'))
    .sort();
}

interface Target {
  readonly name: string;
  readonly allowDoctype: boolean;
  readonly queue: string;
  readonly bridge: RunningBridge;
}

interface Sent {
  readonly target: Target;
  readonly contentType: string;
  readonly key: string;
  readonly expected: 202 | 400;
  readonly status: number;
  readonly messageId: string | null;
  readonly responseType: string | null;
  readonly body: string;
}

function problemDetail(body: string): unknown {
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === 'object' && parsed !== null && 'detail' in parsed
      ? parsed.detail
      : undefined;
  } catch {
    return undefined;
  }
}

describe('partner corpus through the bridge', { timeout: 110_000 }, () => {
  if (!existsSync(CORPUS)) {
    it('needs the shared corpus', (t) => {
      t.skip(
        '../shared/corpus not found: the corpus suite runs where the shared corpus exists (as in CI)',
      );
    });
    return;
  }

  const manifest = readManifest();

  it('MANIFEST.md lists exactly the files on disk, with their sizes', () => {
    const listed = manifest.rows.map((r) => r.file).sort();
    assert.deepEqual(listed, corpusFiles());
    assert.equal(manifest.rows.length, manifest.totalFiles);
    assert.equal(
      manifest.rows.reduce((sum, r) => sum + r.bytes, 0),
      manifest.totalBytes,
    );
  });

  it('every file: 202 with its exact bytes queued, or 400 with a problem and nothing queued', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const specs = [
      { name: 'strict', allowDoctype: false },
      { name: 'allowDoctype', allowDoctype: true },
    ];
    const queues = await Promise.all(
      specs.map((s) => broker.queue(uniqueName(`corpus-${s.name}`))),
    );
    // allowDoctype is a global limit, hence one bridge per setting. One worker each: the corpus
    // exercises what a worker does with a body, not how requests spread over workers.
    const started = await Promise.allSettled(
      specs.map((s, i) =>
        startBridge(
          baseConfig([{ path: ROUTE, mode: 'publish', exchange: '', routingKey: queues[i] }], {
            workers: 1,
            limits: { allowDoctype: s.allowDoctype },
          }),
        ),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') t.after(() => s.value.stop());
    const targets: Target[] = started.map((s, i) => {
      if (s.status === 'rejected') throw s.reason;
      const spec = specs[i];
      const queue = queues[i];
      assert.ok(spec !== undefined && queue !== undefined);
      return { ...spec, queue, bridge: s.value };
    });

    const runId = uniqueName('corpus');
    let seq = 0;
    let accepted = 0;
    let refused = 0;

    for (const row of manifest.rows) {
      await t.test(row.file, async () => {
        const bytes = readFileSync(path.join(CORPUS, row.file));
        assert.equal(bytes.length, row.bytes, 'size differs from the manifest');
        const sent: Sent[] = [];
        const queued = new Map<Target, GetMessage[]>();
        try {
          for (const target of targets) {
            for (const contentType of contentTypes(row)) {
              const key = `${runId}-${++seq}`;
              const res = await fetch(`${target.bridge.url}${ROUTE}`, {
                method: 'POST',
                headers: { 'content-type': contentType, 'idempotency-key': key },
                body: bytes,
              });
              sent.push({
                target,
                contentType,
                key,
                expected: expectedStatus(row, target.allowDoctype),
                status: res.status,
                messageId: res.headers.get('message-id'),
                responseType: res.headers.get('content-type'),
                body: await res.text(),
              });
            }
          }
        } finally {
          // 2xx means confirmed, so everything accepted is in the queue by now; always empty it
          // so the next file starts from an empty queue.
          for (const target of targets) queued.set(target, await broker.drain(target.queue));
        }

        for (const s of sent) {
          const what = `${s.target.name} bridge, ${s.contentType}`;
          if (s.status === 202) accepted++;
          else if (s.status === 400) refused++;
          assert.equal(s.status, s.expected, `${what}: got ${s.status} ${s.body}`);
          if (s.status === 202) {
            assert.equal(s.messageId, s.key, `${what}: Message-Id`);
          } else {
            assert.match(
              s.responseType ?? '',
              /^application\/problem\+json/,
              `${what}: Content-Type`,
            );
            const detail = problemDetail(s.body);
            assert.ok(
              typeof detail === 'string' && detail.trim() !== '',
              `${what}: no detail in ${s.body}`,
            );
          }
        }

        for (const target of targets) {
          const messages = queued.get(target) ?? [];
          const acceptedKeys = sent
            .filter((s) => s.target === target && s.status === 202)
            .map((s) => s.key);
          assert.deepEqual(
            messages.map((m) => String(m.properties.messageId)).sort(),
            acceptedKeys.sort(),
            `${target.name} bridge: the queue must hold exactly one message per 202, nothing refused`,
          );
          for (const m of messages) {
            const what = `${target.name} bridge, message ${String(m.properties.messageId)}`;
            assert.ok(m.content.equals(bytes), `${what}: body differs from the file's bytes`);
            const root: unknown = m.properties.headers?.['x-xml-root'];
            assert.equal(typeof root, 'string', `${what}: x-xml-root header missing`);
            assertRootMatches(String(root), row.root, `${what}: x-xml-root`);
          }
        }
      });
    }

    const requests = accepted + refused;
    t.diagnostic(
      `corpus: ${manifest.rows.length} files, ${accepted} accepted, ${refused} refused ` +
        `(${requests} requests over ${targets.length} bridges)`,
    );
    assert.equal(seq, requests, 'every request was answered 202 or 400');
  });
});
