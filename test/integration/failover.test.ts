/**
 * BrokerLink failover between two broker URLs and back (issue #14), against the real broker
 * behind two loopback proxies that stand for two cluster nodes: a worker that loses its node
 * tries the other one at once, not after `reconnectSeconds`; and once its own node answers again
 * it moves back there with publishes in flight, none of which is cut.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { BrokerLink } from '../../src/worker/amqp/connection.js';
import { Publisher } from '../../src/worker/amqp/publisher.js';
import { PublishTemplate } from '../../src/worker/amqp/frames.js';
import { RequestRecord } from '../../src/worker/request.js';
import { startBrokerProxy, type BrokerProxy } from '../helpers/broker-proxy.js';
import { openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';

/** Long, so that a failover that waited for it could not pass for an immediate one. */
const RECONNECT_SECONDS = 5;
const HOME_CHECK_MS = 200;

const template = new PublishTemplate({
  exchange: '',
  mandatory: true,
  persistent: true,
  appId: 'xml-amqp-bridge',
  correlationId: false,
  constantHeaders: {},
  headerNames: ['x-request-id'],
});

function send(publisher: Publisher, queue: string, body: string): Promise<void> {
  const id = randomUUID();
  const record = new RequestRecord('failover', id, performance.now(), {
    published: () => undefined,
    ended: () => undefined,
  });
  const done = publisher.publish(
    template,
    {
      routingKey: queue,
      contentType: 'application/xml',
      messageId: id,
      correlationId: '',
      timestampSeconds: Math.floor(Date.now() / 1000),
      headerValues: [id],
      body: Buffer.from(body),
    },
    id,
    record,
  );
  record.end();
  return done;
}

describe(
  'BrokerLink across two nodes (real broker behind two proxies)',
  { timeout: 60_000 },
  () => {
    let broker: TestBroker;
    let own: BrokerProxy;
    let other: BrokerProxy;
    let link: BrokerLink;
    let publisher: Publisher;

    before(async () => {
      broker = await openBroker();
      own = await startBrokerProxy({ up: true });
      other = await startBrokerProxy({ up: true });
      link = new BrokerLink({
        amqp: {
          urls: [other.url, own.url],
          heartbeatSeconds: 5,
          reconnectSeconds: RECONNECT_SECONDS,
          maxInFlight: 1000,
          confirmTimeoutMs: 10_000,
          stallMs: 0,
        },
        topology: { exchanges: [], queues: [], bindings: [] },
        connectionName: uniqueName('failover-link'),
        // Slot 1: this worker's own node is the second URL.
        firstUrl: 1,
        retireMs: 500,
        homeCheckMs: HOME_CHECK_MS,
      });
      publisher = new Publisher(link, { confirmTimeoutMs: 10_000, stallMs: 0 });
      const first = once(link, 'channel');
      link.start();
      await first;
    });

    after(async () => {
      publisher?.close();
      await link?.close();
      await own?.close();
      await other?.close();
      await broker?.close();
    });

    it('starts on its own node, fails over to the other at once, and moves back with publishes in flight', async () => {
      const queue = await broker.queue(uniqueName('failover'));
      assert.equal(link.node, `127.0.0.1:${own.port}`, 'worker 1 starts at the second URL');

      const lost = once(link, 'state');
      const moved = once(link, 'connected');
      const t0 = performance.now();
      own.down();
      await lost;
      const [node] = (await moved) as [string, boolean];
      const failoverMs = performance.now() - t0;
      assert.equal(node, `127.0.0.1:${other.port}`);
      assert.ok(
        failoverMs < RECONNECT_SECONDS * 1000,
        `connected to the other node after ${failoverMs.toFixed(0)} ms, not after reconnectSeconds`,
      );
      if (!link.ready) await once(link, 'channel');
      await send(publisher, queue, '<on-other/>');

      // Publishes flow while the worker's own node comes back and the link moves there.
      const outcomes: Array<Promise<void>> = [];
      let stop = false;
      const pump = (): void => {
        if (stop) return;
        outcomes.push(send(publisher, queue, '<during-move/>').then(pump));
      };
      for (let i = 0; i < 20; i++) pump();
      const home = once(link, 'moved-home');
      own.up();
      const [homeNode] = (await home) as [string];
      assert.equal(homeNode, `127.0.0.1:${own.port}`);
      assert.equal(link.node, homeNode);
      // Some publishes on the new connection too, then stop and collect every outcome.
      const confirmedBefore = publisher.confirmedTotal;
      while (publisher.confirmedTotal < confirmedBefore + 50)
        await once(link.channel ?? link, 'ack');
      stop = true;
      await Promise.all(outcomes);
      assert.equal(publisher.unconfirmed, 0);
      assert.equal(await broker.count(queue), outcomes.length + 1, 'every publish is in the queue');
      assert.equal(link.ready, true);
      await broker.drain(queue);
    });
  },
);
