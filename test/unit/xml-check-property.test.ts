/**
 * Property-based tests of XmlChecker (fast-check): generated well-formed documents give the
 * model's root and extracted values however the bytes are chunked and in whichever Unicode
 * encoding they travel; damaged documents only ever throw XmlError; the depth limit is exact;
 * prefixes are accepted exactly when they are declared in scope (#11).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { XmlError } from '../../src/shared/errors.js';
import { XmlChecker, type XmlSummary } from '../../src/worker/xml/check.js';
import { compilePaths } from '../../src/worker/xml/paths.js';

interface Element {
  readonly name: string;
  readonly attributes: ReadonlyArray<readonly [string, string]>;
  readonly children: readonly Content[];
}
type Content = Element | { readonly text: string } | { readonly cdata: string };

const isElement = (c: Content): c is Element => 'name' in c;

// Characters that need escaping, line ends, CJK and an astral character: the edges of decoding,
// chunking and entity handling. No CR: XML normalises it, so the model would have to as well.
const TEXT_CHARS = ['a', 'Z', '0', ' ', '\n', '\t', '<', '>', '&', '"', "'", ']', '中', 'é', '😀'];
const text = fc.string({ unit: fc.constantFrom(...TEXT_CHARS), maxLength: 8 });
// A CDATA section cannot contain `]]>`; leaving out `>` is the simplest way to never write it.
const cdata = fc.string({ unit: fc.constantFrom(...TEXT_CHARS.filter((c) => c !== '>')) });

const element: fc.Arbitrary<Element> = fc.letrec<{ element: Element; content: Content }>((tie) => ({
  element: fc.record({
    name: fc.constantFrom('a', 'b', 'p:a', 'p:b', '中', 'x-y.z'),
    attributes: fc.uniqueArray(fc.tuple(fc.constantFrom('id', 'n', 'p:id', 'q:n'), text), {
      selector: ([name]) => name,
      maxLength: 3,
    }),
    children: fc.array(tie('content'), { maxLength: 4 }),
  }),
  content: fc.oneof(
    { maxDepth: 4, depthIdentifier: 'tree' },
    text.map((t) => ({ text: t })),
    cdata.map((c) => ({ cdata: c })),
    tie('element'),
  ),
})).element;

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttribute(s: string): string {
  // Tabs and newlines as references: literal ones are normalised to spaces (XML 1.0 §3.3.3).
  return escapeText(s).replace(/"/g, '&quot;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
}

function serialize(e: Element, root: boolean): string {
  const declarations = root ? ' xmlns:p="urn:p" xmlns:q="urn:q"' : '';
  const attributes = e.attributes.map(([n, v]) => ` ${n}="${escapeAttribute(v)}"`).join('');
  const inner = e.children
    .map((c) =>
      isElement(c)
        ? serialize(c, false)
        : 'text' in c
          ? escapeText(c.text)
          : `<![CDATA[${c.cdata}]]>`,
    )
    .join('');
  return `<${e.name}${declarations}${attributes}${e.children.length === 0 ? '/>' : `>${inner}</${e.name}>`}`;
}

function textContent(e: Element): string {
  return e.children
    .map((c) => (isElement(c) ? textContent(c) : 'text' in c ? c.text : c.cdata))
    .join('');
}

/** Every element path in document order, with the element: the model of "first match". */
function elementsByPath(e: Element, prefix = ''): Array<readonly [string, Element]> {
  const path = `${prefix}/${e.name}`;
  return [[path, e], ...e.children.filter(isElement).flatMap((c) => elementsByPath(c, path))];
}

/** What extraction must give for `paths`: first element's text, first element with the attribute. */
function expectedValues(root: Element, paths: readonly string[]): Record<string, string> {
  const all = elementsByPath(root);
  const out: Record<string, string> = {};
  for (const path of paths) {
    const at = path.lastIndexOf('/@');
    if (at === -1) {
      const hit = all.find(([p]) => p === path);
      if (hit !== undefined) out[path] = textContent(hit[1]);
    } else {
      const elementPath = path.slice(0, at);
      const name = path.slice(at + 2);
      for (const [p, e] of all) {
        const value = p === elementPath ? e.attributes.find(([n]) => n === name) : undefined;
        if (value !== undefined) {
          out[path] = value[1];
          break;
        }
      }
    }
  }
  return out;
}

type Encoding = 'utf-8' | 'utf-8 BOM' | 'utf-16le BOM' | 'utf-16be BOM' | 'utf-16le declared';

function encode(doc: string, encoding: Encoding): Uint8Array {
  switch (encoding) {
    case 'utf-8':
      return new TextEncoder().encode(`<?xml version="1.0" encoding="UTF-8"?>${doc}`);
    case 'utf-8 BOM':
      return new TextEncoder().encode(`\ufeff${doc}`);
    case 'utf-16le BOM':
      return utf16(`\ufeff<?xml version="1.0" encoding="UTF-16"?>${doc}`, true);
    case 'utf-16be BOM':
      return utf16(`\ufeff${doc}`, false);
    case 'utf-16le declared':
      return utf16(`<?xml version='1.0' encoding='UTF-16LE'?>${doc}`, true);
  }
}

function utf16(s: string, littleEndian: boolean): Uint8Array {
  const out = new Uint8Array(s.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < s.length; i++) view.setUint16(i * 2, s.charCodeAt(i), littleEndian);
  return out;
}

/** Cut points inside a body of `length` bytes, as sorted positions. */
const cuts = fc.uniqueArray(fc.nat(), { maxLength: 12 });

/** Feeds `body` split at `at` (positions modulo the length) through one scratch buffer, as uWS does. */
function run(
  body: Uint8Array,
  at: readonly number[],
  options: ConstructorParameters<typeof XmlChecker>[0],
): XmlSummary {
  const checker = new XmlChecker(options);
  const positions = [...new Set(at.map((p) => (body.length === 0 ? 0 : p % body.length)))]
    .filter((p) => p > 0)
    .sort((a, b) => a - b);
  const bounds = [0, ...positions, body.length];
  const scratch = new Uint8Array(body.length);
  for (let i = 0; i + 1 < bounds.length; i++) {
    const piece = body.subarray(bounds[i], bounds[i + 1]);
    scratch.set(piece);
    checker.feed(scratch.subarray(0, piece.length), i + 2 === bounds.length);
    scratch.fill(0x3c); // the socket layer reuses its buffer
  }
  return checker.end();
}

const ENCODINGS: readonly Encoding[] = [
  'utf-8',
  'utf-8 BOM',
  'utf-16le BOM',
  'utf-16be BOM',
  'utf-16le declared',
];

describe('XmlChecker properties', () => {
  it('accepts generated documents with the model root and values, however chunked and encoded', () => {
    fc.assert(
      fc.property(
        element,
        fc.constantFrom(...ENCODINGS),
        cuts,
        fc.array(fc.constantFrom('/a', '/a/b', '/p:a/a', '/b/@id', '/a/p:b/@q:n', '/中/@p:id'), {
          maxLength: 4,
        }),
        (root, encoding, at, wanted) => {
          const paths = [
            ...new Set([
              ...wanted,
              ...elementsByPath(root)
                .map(([p]) => p)
                .slice(0, 3),
            ]),
          ];
          const body = encode(serialize(root, true), encoding);
          const summary = run(body, at, {
            maxDepth: 64,
            allowDoctype: false,
            paths: compilePaths(paths),
          });
          assert.equal(summary.root, root.name);
          assert.deepEqual(Object.fromEntries(summary.values), expectedValues(root, paths));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('throws nothing but XmlError for a truncated, corrupted, inserted or deleted byte', () => {
    const damage = fc.oneof(
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), byte: fc.nat(255) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.nat(255) }),
      fc.record({ kind: fc.constant('delete' as const), at: fc.nat() }),
    );
    fc.assert(
      fc.property(
        element,
        fc.constantFrom(...ENCODINGS),
        damage,
        cuts,
        fc.boolean(),
        (root, encoding, d, at, allowDoctype) => {
          const body = encode(serialize(root, true), encoding);
          const i = d.at % (body.length + 1);
          const damaged = Buffer.concat([
            body.subarray(0, i),
            d.kind === 'replace' || d.kind === 'insert' ? Uint8Array.of(d.byte) : new Uint8Array(0),
            d.kind === 'truncate'
              ? new Uint8Array(0)
              : body.subarray(d.kind === 'insert' ? i : i + 1),
          ]);
          try {
            run(damaged, at, { maxDepth: 64, allowDoctype });
          } catch (err) {
            assert.ok(err instanceof XmlError, `threw ${String(err)}`);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('accepts exactly maxDepth levels and refuses one more as too-deep', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.constantFrom('a', 'p:b', '中'), { minLength: 40, maxLength: 40 }),
        cuts,
        (maxDepth, depth, names, at) => {
          const chain = names.slice(0, depth);
          const doc = `<r xmlns:p="urn:p">${chain.map((n) => `<${n} n="1">`).join('')}x${chain
            .reverse()
            .map((n) => `</${n}>`)
            .join('')}</r>`;
          const body = new TextEncoder().encode(doc);
          const total = depth + 1; // the root r counts
          if (total <= maxDepth) {
            assert.equal(run(body, at, { maxDepth, allowDoctype: false }).root, 'r');
          } else {
            assert.throws(
              () => run(body, at, { maxDepth, allowDoctype: false }),
              (err) => err instanceof XmlError && err.reason === 'too-deep',
            );
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('accepts a prefix exactly where a declaration is in scope', () => {
    // A chain of elements, each declaring some prefixes and using one on its name and/or an
    // attribute; the model tracks the scope the way Namespaces in XML 1.0 §6.1 defines it.
    const step = fc.record({
      declares: fc.subarray(['a', 'b', 'c']),
      element: fc.constantFrom('x', 'a:x', 'b:x', 'c:x', 'xml:x'),
      attribute: fc.constantFrom(undefined, 'n', 'a:n', 'b:n', 'xml:lang'),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 6 }), cuts, (steps, at) => {
        const open: string[] = [];
        const close: string[] = [];
        const scopes: Array<ReadonlySet<string>> = [];
        let bound = true;
        const inScope = (name: string): boolean => {
          const colon = name.indexOf(':');
          if (colon === -1) return true;
          const prefix = name.slice(0, colon);
          return prefix === 'xml' || scopes.some((s) => s.has(prefix));
        };
        for (const s of steps) {
          scopes.push(new Set(s.declares));
          if (!inScope(s.element) || (s.attribute !== undefined && !inScope(s.attribute)))
            bound = false;
          const declarations = s.declares.map((p) => ` xmlns:${p}="urn:${p}"`).join('');
          const attribute = s.attribute === undefined ? '' : ` ${s.attribute}="v"`;
          open.push(`<${s.element}${attribute}${declarations}>`);
          close.unshift(`</${s.element}>`);
        }
        const body = new TextEncoder().encode(open.join('') + close.join(''));
        const check = (): XmlSummary => run(body, at, { maxDepth: 64, allowDoctype: false });
        if (bound) {
          assert.equal(check().root, steps[0]?.element);
        } else {
          assert.throws(
            check,
            (err) =>
              err instanceof XmlError &&
              err.reason === 'malformed' &&
              /not declared/.test(err.message),
          );
        }
      }),
      { numRuns: 500 },
    );
  });
});
