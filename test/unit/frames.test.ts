/**
 * The bridge's own publish frames (src/worker/amqp/frames.ts, message.ts): byte for byte what
 * amqplib 2.3 writes for the same message, read back by amqplib's parser with every property and
 * header the README's "The AMQP message" fixes, for publish and rpc routes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateConfig } from '../../src/shared/config.js';
import type { PublishRouteConfig, RpcRouteConfig } from '../../src/shared/config-schema.js';
import { XmlError } from '../../src/shared/errors.js';
import { PublishTemplate } from '../../src/worker/amqp/frames.js';
import {
  APP_ID,
  checkRoutingKey,
  DEFAULT_CONTENT_TYPE,
  messageFields,
  routeTemplate,
} from '../../src/worker/amqp/message.js';
import type { ReceivedBody, RequestFacts } from '../../src/worker/request.js';
import { amqplibPublishFrames, decodePublish } from '../helpers/amqp-frames.js';

function route<T extends PublishRouteConfig | RpcRouteConfig>(r: Record<string, unknown>): T {
  const [compiled] = validateConfig({ routes: [r] }).routes;
  return compiled as T; // the one route just validated, of the mode the test asked for
}

const publishRoute = route<PublishRouteConfig>({
  path: '/wechat/notify',
  mode: 'publish',
  exchange: 'partners',
  routingKey: 'wechat.{/xml/MsgType}',
  forwardHeaders: ['x-partner-signature', 'x-trace-id'],
});
const rpcRoute = route<RpcRouteConfig>({
  path: '/orders',
  mode: 'rpc',
  routingKey: 'orders.rpc',
  timeoutMs: 7000,
});

function facts(over: Partial<RequestFacts> = {}): RequestFacts {
  return {
    method: 'POST',
    path: '/wechat/notify',
    query: 'a=1&b=2',
    remoteAddr: '127.0.0.1',
    requestId: '6f1c2d1e-0000-4000-8000-000000000001',
    messageId: 'order-42',
    contentType: 'text/xml; charset=utf-8',
    forwarded: [undefined, undefined],
    allHeaders: undefined,
    partner: undefined,
    ...over,
  };
}

function received(body: string | Buffer, root = 'xml'): ReceivedBody {
  return {
    body: typeof body === 'string' ? Buffer.from(body) : body,
    summary: { root, values: new Map(), encoding: 'utf-8' },
  };
}

describe('publish frames', { timeout: 10_000 }, () => {
  it('are byte for byte what amqplib writes for the same publish (publish route, forwarded headers)', () => {
    const f = facts({ forwarded: ['sig=abc', undefined], query: 'q=山田' });
    const body = received('<xml><MsgType>pay</MsgType></xml>');
    const fields = messageFields(f, body, 'wechat.pay');
    const ours = routeTemplate(publishRoute).encode(3, 131072, fields);
    const theirs = amqplibPublishFrames(
      3,
      131072,
      {
        exchange: 'partners',
        routingKey: 'wechat.pay',
        mandatory: true,
        immediate: false,
        ticket: 0,
      },
      {
        contentType: 'text/xml; charset=utf-8',
        headers: {
          'x-http-method': 'POST',
          'x-http-path': '/wechat/notify',
          'x-http-query': 'q=山田',
          'x-remote-addr': '127.0.0.1',
          'x-request-id': f.requestId,
          'x-xml-root': 'xml',
          'x-partner-signature': 'sig=abc',
        },
        deliveryMode: 2,
        messageId: 'order-42',
        timestamp: fields.timestampSeconds,
        appId: APP_ID,
      },
      body.body,
    );
    assert.deepEqual(ours, theirs);
  });

  it('carry the contract properties and exactly the contract headers when nothing is forwarded', () => {
    const before = Math.floor(Date.now() / 1000);
    const fields = messageFields(facts(), received('<soap:Envelope/>', 'soap:Envelope'), 'wechat.');
    const after = Math.floor(Date.now() / 1000);
    const m = decodePublish(routeTemplate(publishRoute).encode(1, 131072, fields));
    assert.equal(m.channel, 1);
    assert.equal(m.method['exchange'], 'partners');
    assert.equal(m.method['routingKey'], 'wechat.');
    assert.equal(m.method['mandatory'], true);
    assert.equal(m.properties['deliveryMode'], 2);
    assert.equal(m.properties['contentType'], 'text/xml; charset=utf-8');
    assert.equal(m.properties['messageId'], 'order-42');
    assert.equal(m.properties['appId'], 'xml-amqp-bridge');
    const ts = m.properties['timestamp'];
    assert.ok(
      typeof ts === 'number' && ts >= before && ts <= after,
      `timestamp ${String(ts)} in whole seconds`,
    );
    assert.equal(m.properties['correlationId'], undefined);
    assert.equal(m.properties['replyTo'], undefined);
    assert.equal(m.properties['expiration'], undefined);
    assert.deepEqual(m.properties.headers, {
      'x-http-method': 'POST',
      'x-http-path': '/wechat/notify',
      'x-http-query': 'a=1&b=2',
      'x-remote-addr': '127.0.0.1',
      'x-request-id': '6f1c2d1e-0000-4000-8000-000000000001',
      'x-xml-root': 'soap:Envelope',
    });
    assert.equal(m.body.toString(), '<soap:Envelope/>');
  });

  it('default content_type to application/xml and keep an empty query as an empty header', () => {
    const m = decodePublish(
      routeTemplate(publishRoute).encode(
        1,
        131072,
        messageFields(facts({ contentType: undefined, query: '' }), received('<a/>'), 'k'),
      ),
    );
    assert.equal(m.properties['contentType'], DEFAULT_CONTENT_TYPE);
    assert.equal(m.properties.headers?.['x-http-query'], '');
  });

  it('are transient with reply_to, correlation_id and the timeout as expiration on rpc routes', () => {
    const fields = messageFields(
      facts({ forwarded: [] }),
      received('<order/>', 'order'),
      'orders.rpc',
      'corr-1',
    );
    const m = decodePublish(routeTemplate(rpcRoute).encode(2, 131072, fields));
    assert.equal(m.properties['deliveryMode'], 1);
    assert.equal(m.properties['correlationId'], 'corr-1');
    assert.equal(m.properties['replyTo'], 'amq.rabbitmq.reply-to');
    assert.equal(m.properties['expiration'], '7000');
    assert.equal(m.method['exchange'], '');
  });

  it('are persistent on an rpc route that asks for it', () => {
    const persistent = route<RpcRouteConfig>({
      path: '/p',
      mode: 'rpc',
      routingKey: 'p',
      persistent: true,
    });
    const m = decodePublish(
      routeTemplate(persistent).encode(
        2,
        131072,
        messageFields(facts({ forwarded: [] }), received('<a/>'), 'p', 'c'),
      ),
    );
    assert.equal(m.properties['deliveryMode'], 2);
  });

  it('split a body over several frames at frameMax, and send no body frame for an empty body', () => {
    const template = new PublishTemplate({
      exchange: '',
      mandatory: true,
      persistent: true,
      appId: 'a',
      correlationId: false,
      constantHeaders: {},
      headerNames: [],
    });
    const body = Buffer.alloc(10_000, 0x61);
    const fields = {
      routingKey: 'q',
      contentType: 'application/xml',
      messageId: 'm',
      correlationId: '',
      timestampSeconds: 1,
      headerValues: [],
      body,
    };
    const split = template.encode(1, 4096, fields);
    const m = decodePublish(split, 4096);
    assert.equal(m.frames, 2 + Math.ceil(10_000 / (4096 - 8)));
    assert.equal(m.bodySize, 10_000);
    assert.deepEqual(m.body, body);
    assert.deepEqual(
      split,
      amqplibPublishFrames(
        1,
        4096,
        { routingKey: 'q', mandatory: true },
        {
          contentType: 'application/xml',
          headers: {},
          deliveryMode: 2,
          messageId: 'm',
          timestamp: 1,
          appId: 'a',
        },
        body,
      ),
    );
    assert.equal(
      decodePublish(template.encode(1, 4096, { ...fields, body: Buffer.alloc(0) })).frames,
      2,
    );
  });

  it('refuse a routing key over 255 bytes as a 400 before anything is encoded', () => {
    assert.equal(checkRoutingKey('k'.repeat(255)), 'k'.repeat(255));
    assert.throws(
      () => checkRoutingKey('中'.repeat(86)),
      (err: unknown) => err instanceof XmlError && err.reason === 'routing-key',
    );
    // And the encoder itself never writes a longer short string.
    assert.throws(
      () =>
        routeTemplate(publishRoute).encode(
          1,
          131072,
          messageFields(facts(), received('<a/>'), 'k'.repeat(256)),
        ),
      RangeError,
    );
  });
});
