/**
 * Property-based tests of the AMQP headers of publish and rpc messages (fast-check): for any
 * `forwardHeaders` list the config accepts and any request, the encoded message
 * (amqp/message.ts + frames.ts, decoded as a broker would) carries exactly the contract's
 * x-http-* / x-remote-addr / x-request-id / x-xml-root headers and each forwarded header the
 * request sent, lower-cased, with its value (#11).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { validateConfig } from '../../src/shared/config.js';
import type { PublishRouteConfig, RpcRouteConfig } from '../../src/shared/config-schema.js';
import { messageFields, routeTemplate } from '../../src/worker/amqp/message.js';
import type { ReceivedBody, RequestFacts } from '../../src/worker/request.js';
import { decodePublish } from '../helpers/amqp-frames.js';

/** Header names as partners spell them; the bridge lower-cases them at config load. */
const headerName = fc
  .string({
    unit: fc.constantFrom('x', 'X', '-', 'a', 'B', '1', '_', '.'),
    minLength: 1,
    maxLength: 12,
  })
  .filter((n) => !/^(x-http-|x-request-id$|x-remote-addr$|x-xml-root$|cc$|bcc$)/i.test(n));

/** Values the HTTP layer lets through: printable, any script, up to the length limit. */
const headerValue = fc.string({
  unit: fc.constantFrom('a', 'Z', '0', ' ', '=', '/', ';', 'é', '中', '😀'),
  maxLength: 40,
});

const request = fc.record({
  mode: fc.constantFrom('publish' as const, 'rpc' as const),
  path: fc.constantFrom('/wechat/notify', '/a', '/orders/v2'),
  names: fc.uniqueArray(headerName, { maxLength: 16, selector: (n) => n.toLowerCase() }),
  values: fc.array(fc.option(headerValue, { nil: undefined }), { minLength: 16, maxLength: 16 }),
  query: fc.string({ maxLength: 20 }),
  remoteAddr: fc.constantFrom('127.0.0.1', '::1', '2001:db8::7'),
  root: fc.constantFrom('xml', 'soap:Envelope', '中'),
});

describe('AMQP headers: properties', () => {
  it('carry the contract headers and exactly the forwarded headers the request sent', () => {
    fc.assert(
      fc.property(request, (r) => {
        const [route] = validateConfig({
          routes: [
            {
              path: r.path,
              mode: r.mode,
              routingKey: 'k',
              forwardHeaders: r.names,
            },
          ],
        }).routes;
        // The one route just validated, of the mode asked for.
        const compiled = route as PublishRouteConfig | RpcRouteConfig;
        assert.deepEqual(
          compiled.forwardHeaders,
          r.names.map((n) => n.toLowerCase()),
        );
        const forwarded = compiled.forwardHeaders.map((_, i) => r.values[i]);
        const facts: RequestFacts = {
          method: 'POST',
          path: r.path,
          query: r.query,
          remoteAddr: r.remoteAddr,
          requestId: 'req-1',
          messageId: 'msg-1',
          contentType: undefined,
          forwarded,
          allHeaders: undefined,
          partner: undefined,
        };
        const received: ReceivedBody = {
          body: Buffer.from('<x/>'),
          summary: { root: r.root, values: new Map(), encoding: 'utf-8' },
        };
        const m = decodePublish(
          routeTemplate(compiled).encode(1, 131072, messageFields(facts, received, 'k', 'c')),
        );
        const expected: Record<string, string> = {
          'x-http-method': 'POST',
          'x-http-path': r.path,
          'x-http-query': r.query,
          'x-remote-addr': r.remoteAddr,
          'x-request-id': 'req-1',
          'x-xml-root': r.root,
        };
        compiled.forwardHeaders.forEach((name, i) => {
          const v = forwarded[i];
          if (v !== undefined) expected[name] = v;
        });
        assert.deepEqual(m.properties.headers, expected);
        assert.equal(m.properties['contentType'], 'application/xml');
        assert.equal(m.properties['messageId'], 'msg-1');
      }),
      { numRuns: 300 },
    );
  });
});
