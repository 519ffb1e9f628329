/**
 * The one outcome table (src/shared/errors.ts) against the README's status table, and the
 * problem responses rendered from it: a code, its status, its retry advice and its publish
 * outcome cannot disagree between the code, the answers, the metrics and the documentation.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  BridgeError,
  ClientGoneError,
  ERRORS,
  XmlError,
  type ErrorCode,
  type RetryAdvice,
} from '../../src/shared/errors.js';
import { renderProblem } from '../../src/worker/http/render.js';
import { PROJECT_ROOT } from '../helpers/bridge.js';

const CODES = Object.keys(ERRORS) as ErrorCode[];

interface ReadmeRow {
  readonly status: number;
  readonly retry: RetryAdvice;
  readonly line: string;
}

/** The error rows of the README's "HTTP semantics" table: `| case | status | `CODE` | retry |`. */
function readmeRows(): Map<string, ReadmeRow[]> {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(
    readme.indexOf('## HTTP semantics'),
    readme.indexOf('### The AMQP message'),
  );
  const rows = new Map<string, ReadmeRow[]>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const code = /^`(BRIDGE_[A-Z_]+)`$/.exec(cells[3] ?? '')?.[1];
    if (code === undefined) continue;
    const retryCell = cells[4] ?? '';
    const retry: RetryAdvice | undefined =
      retryCell === 'safe'
        ? 'safe'
        : retryCell === 'with key'
          ? 'with-key'
          : retryCell === 'no'
            ? 'no'
            : undefined;
    assert.ok(retry !== undefined, `README row has no retry advice: ${line}`);
    const row = { status: Number(/^\d{3}/.exec(cells[2] ?? '')?.[0]), retry, line };
    rows.set(code, [...(rows.get(code) ?? []), row]);
  }
  return rows;
}

describe('the outcome table', { timeout: 10_000 }, () => {
  it('lists every code in the README once, with the status and retry advice of the table', () => {
    const rows = readmeRows();
    assert.deepEqual(
      [...rows.keys()].sort(),
      [...CODES].sort(),
      'the README names exactly the codes of src/shared/errors.ts',
    );
    for (const code of CODES) {
      const [row, ...more] = rows.get(code) ?? [];
      assert.ok(row !== undefined && more.length === 0, `${code}: one README row`);
      assert.equal(row.status, ERRORS[code].status, `${code}: README status (${row.line})`);
      assert.equal(row.retry, ERRORS[code].retry, `${code}: README retry advice (${row.line})`);
    }
  });

  it('counts a publish outcome only for failures of a publish, matching their status', () => {
    const expected: Partial<Record<ErrorCode, string>> = {
      BRIDGE_PUBLISH_NACKED: 'nacked',
      BRIDGE_UNROUTABLE: 'returned',
      BRIDGE_CONFIRM_TIMEOUT: 'timeout',
      BRIDGE_BROKER_UNAVAILABLE: 'unavailable',
      BRIDGE_CONNECTION_LOST: 'unavailable',
      BRIDGE_OVERLOADED: 'overloaded',
    };
    for (const code of CODES) assert.equal(ERRORS[code].publishOutcome, expected[code], code);
    for (const code of CODES) {
      // A publish outcome means the broker or admission decided: never a 4xx the partner caused.
      if (ERRORS[code].publishOutcome !== undefined) assert.ok(ERRORS[code].status >= 500, code);
    }
  });

  it('never advises "no" for what the partner could not cause, nor "safe" where a message may exist', () => {
    for (const code of CODES) {
      const { status, retry } = ERRORS[code];
      if (retry === 'no')
        assert.ok(
          status >= 400 && status < 500 && status !== 408 && status !== 499,
          `${code}: "no" only for the partner's own mistakes`,
        );
      if (status === 504)
        assert.equal(retry, 'with-key', `${code}: a timeout leaves the outcome unknown`);
    }
  });

  it('renders every code as RFC 9457 problem+json, with Retry-After on 503 only', () => {
    for (const code of CODES) {
      const err = new BridgeError(code, `detail of ${code}`);
      const r = renderProblem(err, 'req-1');
      assert.equal(r.status, ERRORS[code].status, code);
      const headers = new Map(r.headers.map(([k, v]) => [k.toLowerCase(), v]));
      assert.equal(headers.get('content-type'), 'application/problem+json');
      assert.equal(
        headers.get('retry-after'),
        r.status === 503 ? '1' : undefined,
        `${code}: Retry-After`,
      );
      const body: unknown = JSON.parse(String(r.body));
      assert.deepEqual(body, {
        type: `urn:xml-amqp-bridge:problem:${code.slice(7).toLowerCase().replaceAll('_', '-')}`,
        title: ERRORS[code].title,
        status: ERRORS[code].status,
        detail: `detail of ${code}`,
        code,
        requestId: 'req-1',
      });
      assert.equal(err.retryable, ERRORS[code].retry !== 'no');
    }
  });

  it('keeps the subclasses on their codes', () => {
    assert.equal(new XmlError('too-deep', 'x').code, 'BRIDGE_XML_INVALID');
    const gone = new ClientGoneError();
    assert.ok(gone instanceof BridgeError);
    assert.equal(gone.status, 499);
  });
});
