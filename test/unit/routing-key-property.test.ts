/**
 * Property-based tests of routing-key templates (fast-check): the route's `routingKey` as the
 * config schema accepts it, compiled (xml/extract.ts), its paths extracted from a generated body
 * by XmlChecker (xml/paths.ts), rendered and checked as publish.ts and rpc.ts do (#11).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { validateConfig } from '../../src/shared/config.js';
import type { PublishRouteConfig } from '../../src/shared/config-schema.js';
import { XmlError } from '../../src/shared/errors.js';
import { checkRoutingKey } from '../../src/worker/amqp/message.js';
import { XmlChecker } from '../../src/worker/xml/check.js';
import { compileTemplate } from '../../src/worker/xml/extract.js';
import { compilePaths } from '../../src/worker/xml/paths.js';

/** Literal text of a template: routing-key characters, no braces. */
const literal = fc.string({
  unit: fc.constantFrom('a', 'Z', '9', '.', '#', '*', '-', '_'),
  maxLength: 6,
});

/** The body's leaf elements and attribute, and the template paths that read them. */
const FIELDS = ['/r/MsgType', '/r/Event', '/r/p:Op/@id', '/r/Event/@n'] as const;
type Field = (typeof FIELDS)[number];

/** Values as they come out of a body: any text, including characters that need escaping. */
const value = fc.string({
  unit: fc.constantFrom('a', 'B', '0', '.', ' ', '<', '&', '"', '中', '😀'),
  maxLength: 12,
});

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
}

/** A body holding `values` (a missing field leaves its element or attribute out). */
function body(values: Partial<Record<Field, string>>): string {
  const msgType = values['/r/MsgType'];
  const event = values['/r/Event'];
  const n = values['/r/Event/@n'];
  const id = values['/r/p:Op/@id'];
  return (
    '<r xmlns:p="urn:p">' +
    (msgType === undefined ? '' : `<MsgType>${escape(msgType)}</MsgType>`) +
    (event === undefined && n === undefined
      ? ''
      : `<Event${n === undefined ? '' : ` n="${escape(n)}"`}>${escape(event ?? '')}</Event>`) +
    (id === undefined ? '<p:Op/>' : `<p:Op id="${escape(id)}"/>`) +
    '</r>'
  );
}

const template = fc.array(
  fc.oneof(
    literal,
    fc.constantFrom(...FIELDS).map((f) => ({ field: f })),
  ),
  {
    maxLength: 6,
  },
);

function templateText(parts: ReadonlyArray<string | { field: Field }>): string {
  return parts.map((p) => (typeof p === 'string' ? p : `{${p.field}}`)).join('');
}

describe('routing-key templates: properties', () => {
  it('render literals and the extracted values in order, missing ones as empty', () => {
    fc.assert(
      fc.property(
        template,
        fc.record(
          { '/r/MsgType': value, '/r/Event': value, '/r/p:Op/@id': value, '/r/Event/@n': value },
          { requiredKeys: [] },
        ),
        (parts, values) => {
          const text = templateText(parts);
          // The template as a route declares it: the config schema must accept it unchanged.
          const [route] = validateConfig({
            routes: [{ path: '/t', mode: 'publish', routingKey: text }],
          }).routes;
          assert.equal((route as PublishRouteConfig).routingKey, text);

          const compiled = compileTemplate(text);
          const placeholders = parts.flatMap((p) => (typeof p === 'string' ? [] : [p.field]));
          assert.deepEqual(compiled.paths, [...new Set(placeholders)]);

          const checker = new XmlChecker({
            maxDepth: 8,
            allowDoctype: false,
            paths: compiled.paths.length === 0 ? undefined : compilePaths(compiled.paths),
          });
          checker.feed(new TextEncoder().encode(body(values)), true);
          const summary = checker.end();
          // A present element with an empty value renders '' as well as a missing one does.
          const expected = parts
            .map((p) => (typeof p === 'string' ? p : (values[p.field] ?? '')))
            .join('');
          assert.equal(compiled.render(summary.values), expected);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('refuse a rendered key as routing-key exactly when it is over 255 UTF-8 bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: fc.constantFrom('a', '.', 'é', '中', '😀'), maxLength: 300 }),
          // Keys around the limit, ending in a 1- to 4-byte character: the boundary itself.
          fc
            .tuple(fc.integer({ min: 245, max: 258 }), fc.constantFrom('', 'é', '中', '😀'))
            .map(([n, tail]) => 'a'.repeat(n) + tail),
        ),
        (key) => {
          if (Buffer.byteLength(key) <= 255) {
            assert.equal(checkRoutingKey(key), key);
          } else {
            assert.throws(
              () => checkRoutingKey(key),
              (err) => err instanceof XmlError && err.reason === 'routing-key',
            );
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
