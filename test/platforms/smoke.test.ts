/**
 * Platform tier smoke, run by `npm test` (CI): the bridge on Node.js 22 in the Debian 13 root, on
 * the 20.57 build, serving HTTPS, publishes (2xx once confirmed) and answers an rpc route with
 * the backend's reply, against the broker on this host. `npm run test:platforms` runs the whole
 * e2e publish, rpc and TLS files there on each supported Node.js.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { baseConfig, startBridge, type RunningBridge } from '../helpers/bridge.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { startResponder, type RunningResponder } from '../helpers/responder.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';
import { debian13Runtime } from '../helpers/runtime.js';
import { request } from 'node:https';

/** POST over HTTPS with Node's client, trusting only the test CA. */
function post(url: string, ca: Buffer, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', ca, headers: { 'content-type': 'application/xml' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe(
  'Debian 13 + Node.js 22 + uWebSockets.js 20.57: publish and rpc over HTTPS',
  { timeout: 240_000 },
  () => {
    let pki: TestPki;
    let broker: TestBroker;
    let responder: RunningResponder;
    let bridge: RunningBridge;
    let published: string;
    before(async () => {
      [pki, broker] = await Promise.all([makeTestPki(), openBroker()]);
      published = await broker.queue(uniqueName('platform-publish'));
      const rpcQueue = await broker.queue(uniqueName('platform-rpc'));
      responder = await startResponder({ queue: rpcQueue, state: 'shipped' });
      const routes = [
        { path: '/orders', mode: 'publish', routingKey: published },
        {
          path: '/rpc',
          mode: 'rpc',
          routingKey: rpcQueue,
          timeoutMs: 5000,
          replyHeaders: ['x-order-state'],
        },
      ];
      bridge = await startBridge(
        baseConfig(routes, { tls: { certFile: pki.serverCert, keyFile: pki.serverKey } }),
        {
          runtime: await debian13Runtime('22'),
        },
      );
    });
    after(async () => {
      await bridge?.stop();
      await responder?.stop();
      await broker?.close();
      pki?.remove();
    });

    it('runs the 20.57 build on Node.js 22', () => {
      const build = bridge.logs.find((l) => l.msg === 'uWebSockets.js build');
      assert.equal(build?.['uws'], '@btc-vision/uwebsockets.js@20.57.0');
      assert.match(String(build?.['node']), /^v22\./);
    });

    it('publish: 202 over HTTPS and the body in the queue', async () => {
      const body = '<?xml version="1.0"?><ping n="1"/>';
      const answer = await post(
        `https://127.0.0.1:${bridge.port}/orders`,
        readFileSync(pki.caCert),
        body,
      );
      assert.equal(answer.status, 202);
      const messages = await broker.drain(published);
      assert.deepEqual(
        messages.map((m) => m.content.toString('utf8')),
        [body],
      );
    });

    it('rpc: the backend’s reply over HTTPS', async () => {
      const answer = await post(
        `https://127.0.0.1:${bridge.port}/rpc`,
        readFileSync(pki.caCert),
        '<order id="9"/>',
      );
      assert.equal(answer.status, 200, answer.body);
      assert.match(answer.body, /order id="9"/);
    });
  },
);
