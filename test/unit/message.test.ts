/** buildPublishOptions: the AMQP properties and headers CONTRACT.md's "The AMQP message" section fixes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { APP_ID, buildPublishOptions, DEFAULT_CONTENT_TYPE, type RequestFacts } from '../../src/worker/amqp/message.js';

const CONTRACT_HEADERS = ['x-http-method', 'x-http-path', 'x-http-query', 'x-remote-addr', 'x-request-id', 'x-xml-root'];

function facts(over: Partial<RequestFacts> = {}): RequestFacts {
  return {
    method: 'POST',
    path: '/wechat/notify',
    query: 'a=1&b=2',
    remoteAddr: '127.0.0.1',
    requestId: '6f1c2d1e-0000-4000-8000-000000000001',
    messageId: 'order-42',
    contentType: 'text/xml; charset=utf-8',
    forwarded: [],
    allHeaders: undefined,
    ...over,
  };
}

describe('buildPublishOptions', { timeout: 10_000 }, () => {
  it('publishes persistent and mandatory, with the contract properties', () => {
    const before = Math.floor(Date.now() / 1000);
    const opts = buildPublishOptions(facts(), 'xml');
    const after = Math.floor(Date.now() / 1000);
    assert.equal(opts.persistent, true);
    assert.equal(opts.mandatory, true);
    assert.equal(opts.contentType, 'text/xml; charset=utf-8');
    assert.equal(opts.messageId, 'order-42');
    assert.equal(opts.appId, APP_ID);
    assert.equal(APP_ID, 'xml-amqp-bridge');
    assert.equal(typeof opts.timestamp, 'number');
    // AMQP timestamps are whole seconds since the epoch.
    assert.ok(Number.isInteger(opts.timestamp));
    assert.ok((opts.timestamp ?? 0) >= before && (opts.timestamp ?? 0) <= after);
    assert.equal(opts.deliveryMode, undefined, 'persistent:true is how amqplib sets delivery mode 2');
    assert.equal(opts.CC, undefined);
    assert.equal(opts.BCC, undefined);
  });

  it('defaults content_type to application/xml when the request sent none', () => {
    const opts = buildPublishOptions(facts({ contentType: undefined }), 'xml');
    assert.equal(opts.contentType, 'application/xml');
    assert.equal(DEFAULT_CONTENT_TYPE, 'application/xml');
  });

  it('sets exactly the contract headers when nothing is forwarded', () => {
    const opts = buildPublishOptions(facts(), 'Envelope');
    assert.deepEqual(opts.headers, {
      'x-http-method': 'POST',
      'x-http-path': '/wechat/notify',
      'x-http-query': 'a=1&b=2',
      'x-remote-addr': '127.0.0.1',
      'x-request-id': '6f1c2d1e-0000-4000-8000-000000000001',
      'x-xml-root': 'Envelope',
    });
  });

  it('adds the forwarded headers and nothing else', () => {
    const opts = buildPublishOptions(
      facts({
        forwarded: [
          ['x-partner-signature', 'sig=abc'],
          ['x-trace-id', 't-1'],
        ],
      }),
      'soap:Envelope',
    );
    const headers: Record<string, unknown> = { ...opts.headers };
    assert.deepEqual(Object.keys(headers).sort(), [...CONTRACT_HEADERS, 'x-partner-signature', 'x-trace-id'].sort());
    assert.equal(headers['x-partner-signature'], 'sig=abc');
    assert.equal(headers['x-trace-id'], 't-1');
    assert.equal(headers['x-xml-root'], 'soap:Envelope');
  });

  it('keeps an empty query as an empty string header', () => {
    const opts = buildPublishOptions(facts({ query: '' }), 'xml');
    const headers: Record<string, unknown> = { ...opts.headers };
    assert.equal(headers['x-http-query'], '');
  });

  it('builds independent header tables per call', () => {
    const a = buildPublishOptions(facts({ forwarded: [['x-a', '1']] }), 'xml');
    const b = buildPublishOptions(facts(), 'xml');
    const bHeaders: Record<string, unknown> = { ...b.headers };
    assert.equal(bHeaders['x-a'], undefined);
    assert.notEqual(a.headers, b.headers);
  });
});
