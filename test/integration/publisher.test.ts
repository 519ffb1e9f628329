/** BrokerLink + Publisher against the real broker, without HTTP: every publish outcome, admission, channel recovery and write coalescing. */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import amqplib, { type ConfirmChannel } from 'amqplib';
import { BrokerLink } from '../../src/worker/amqp/connection.js';
import { Publisher } from '../../src/worker/amqp/publisher.js';
import { buildPublishOptions } from '../../src/worker/amqp/message.js';
import { socketOf, WriteCoalescer } from '../../src/worker/amqp/write-coalescer.js';
import { BridgeError, type ErrorCode } from '../../src/shared/errors.js';
import { AMQP_URL } from '../helpers/bridge.js';
import { openBroker, rabbitmqctl, uniqueName, type TestBroker } from '../helpers/broker.js';

const CONFIRM_TIMEOUT_MS = 20_000;

/** Publish options as the HTTP layer builds them, with a unique tracking id per call. */
function optionsFor(messageId: string = randomUUID()): ReturnType<typeof buildPublishOptions> {
  return buildPublishOptions(
    {
      method: 'POST',
      path: '/integration',
      query: '',
      remoteAddr: '127.0.0.1',
      requestId: randomUUID(),
      messageId,
      contentType: undefined,
      forwarded: [],
      allHeaders: undefined,
    },
    'xml',
  );
}

function isBridgeError(code: ErrorCode): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof BridgeError, `expected a BridgeError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    return true;
  };
}

/** Closes only this test's connection (others share the broker), found by its connection_name. */
async function closeConnectionNamed(name: string): Promise<void> {
  const listing = await rabbitmqctl('list_connections', 'pid', 'client_properties');
  const line = listing.split('\n').find((l) => l.includes(name));
  assert.ok(line, `connection ${name} not listed by rabbitmqctl:\n${listing}`);
  const pid = line.split('\t')[0] ?? '';
  await rabbitmqctl('close_connection', pid, 'test');
}

describe('BrokerLink + Publisher (real broker)', { timeout: 90_000 }, () => {
  let broker: TestBroker;
  let link: BrokerLink;
  let publisher: Publisher;
  let exchange: string;
  const connectionName = uniqueName('publisher-link');
  const problems: unknown[] = [];

  before(async () => {
    broker = await openBroker();
    exchange = await broker.exchange(uniqueName('pub-ex'), 'topic');
    link = new BrokerLink({
      amqp: {
        urls: [AMQP_URL],
        heartbeatSeconds: 5,
        reconnectSeconds: 0.2,
        maxInFlight: 3,
        confirmTimeoutMs: CONFIRM_TIMEOUT_MS,
      },
      topology: { exchanges: [], queues: [], bindings: [] },
      connectionName,
    });
    link.on('problem', (p: unknown) => problems.push(p));
    // Before start(): the Publisher hooks 'return' on every channel the link emits, the first included.
    publisher = new Publisher(link, { maxInFlight: 3, confirmTimeoutMs: CONFIRM_TIMEOUT_MS });
    const first = once(link, 'channel');
    link.start();
    await first;
    assert.equal(link.ready, true);
    assert.equal(link.state, 'connected');
  });

  after(async () => {
    await link?.close();
    await broker?.close();
  });

  it('resolves a confirmed publish and the message is in the queue, byte for byte', async () => {
    const queue = await broker.queue(uniqueName('pub-ok'));
    const body = Buffer.from('<xml><a>é中</a></xml>');
    const opts = optionsFor('confirmed-1');
    await publisher.publish('', queue, body, opts);
    const got = await broker.drain(queue);
    assert.equal(got.length, 1);
    const msg = got[0];
    assert.ok(msg);
    assert.deepEqual(msg.content, body);
    assert.equal(msg.properties.messageId, 'confirmed-1');
    assert.equal(msg.properties.deliveryMode, 2);
    assert.equal(msg.properties.appId, 'xml-amqp-bridge');
  });

  it('rejects a mandatory publish nobody is bound for with BRIDGE_UNROUTABLE', async () => {
    await assert.rejects(
      publisher.publish(exchange, 'nobody.is.bound', Buffer.from('<a/>'), optionsFor()),
      isBridgeError('BRIDGE_UNROUTABLE'),
    );
    // The return did not cost the channel.
    assert.equal(link.ready, true);
  });

  it('maps a missing exchange to BRIDGE_UNROUTABLE, reopens the channel, and publishes again', async () => {
    const queue = await broker.queue(uniqueName('pub-recover'));
    for (let round = 0; round < 3; round++) {
      const reopened = once(link, 'channel');
      await assert.rejects(
        publisher.publish(uniqueName('missing-ex'), 'x', Buffer.from('<a/>'), optionsFor()),
        isBridgeError('BRIDGE_UNROUTABLE'),
      );
      await reopened;
      assert.equal(link.ready, true);
      await publisher.publish('', queue, Buffer.from(`<round n="${round}"/>`), optionsFor());
    }
    assert.equal((await broker.drain(queue)).length, 3);
  });

  it('maps a broker nack (full reject-publish queue) to BRIDGE_PUBLISH_NACKED', async () => {
    const queue = await broker.queue(uniqueName('pub-full'), { 'x-max-length': 1, 'x-overflow': 'reject-publish' });
    await publisher.publish('', queue, Buffer.from('<first/>'), optionsFor());
    await assert.rejects(
      publisher.publish('', queue, Buffer.from('<second/>'), optionsFor()),
      isBridgeError('BRIDGE_PUBLISH_NACKED'),
    );
    // A nack is not a channel error: the same channel keeps working.
    assert.equal(link.ready, true);
    const got = await broker.drain(queue);
    assert.deepEqual(
      got.map((m) => m.content.toString()),
      ['<first/>'],
    );
  });

  it('rejects every in-flight publish with BRIDGE_BROKER_UNAVAILABLE when the connection is closed, then recovers', async () => {
    // Keeps the queue small while the loop publishes flat out until the connection drops.
    const queue = await broker.queue(uniqueName('pub-cut'), { 'x-max-length': 100 });
    const wide = new Publisher(link, { maxInFlight: 1000, confirmTimeoutMs: CONFIRM_TIMEOUT_MS });
    const outcomes: Array<Promise<ErrorCode | 'ok'>> = [];
    let stop = false;
    const body = Buffer.from('<x>in flight</x>');
    const launch = (): void => {
      if (stop || link.channel === undefined) return;
      outcomes.push(
        wide.publish('', queue, body, optionsFor()).then(
          () => {
            launch();
            return 'ok' as const;
          },
          (err: unknown) => {
            stop = true;
            return err instanceof BridgeError ? err.code : 'BRIDGE_INTERNAL';
          },
        ),
      );
    };
    for (let i = 0; i < 50; i++) launch();
    let refusedWhileDown: BridgeError | undefined;
    const lost = new Promise<void>((resolve) => {
      link.once('channel-closed', () => {
        // While there is no channel, admission answers 503 at once instead of queueing.
        refusedWhileDown = publisher.admit();
        resolve();
      });
    });
    const reopened = new Promise<ConfirmChannel>((resolve) => {
      // The first 'channel' after the loss, not one from before.
      void lost.then(() => link.once('channel', resolve));
    });
    await closeConnectionNamed(connectionName);
    await lost;
    stop = true;
    // Each outcome settled when the connection dropped: none waits for the 20 s confirm timeout.
    const settled = await Promise.all(outcomes);
    const failures = settled.filter((o) => o !== 'ok');
    // The broker may ack everything it had before it closes the connection, so the number of
    // publishes caught in flight varies; every one that was must fail as retryable 503.
    for (const f of failures) assert.equal(f, 'BRIDGE_BROKER_UNAVAILABLE');
    assert.ok(settled.filter((o) => o === 'ok').length > 0, 'publishes went through before the close');

    assert.ok(refusedWhileDown instanceof BridgeError, 'admit() refused while the channel was gone');
    assert.equal(refusedWhileDown.code, 'BRIDGE_BROKER_UNAVAILABLE');
    await reopened;
    assert.equal(link.ready, true);
    const after = await broker.queue(uniqueName('pub-after'));
    await publisher.publish('', after, Buffer.from('<after/>'), optionsFor('after-reconnect'));
    const got = await broker.drain(after);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.properties.messageId, 'after-reconnect');
  });

  it('admits up to maxInFlight and answers BRIDGE_OVERLOADED beyond it until a release', () => {
    assert.equal(publisher.admit(), undefined);
    assert.equal(publisher.admit(), undefined);
    assert.equal(publisher.admit(), undefined);
    assert.equal(publisher.inFlight, 3);
    const refused = publisher.admit();
    assert.ok(refused instanceof BridgeError);
    assert.equal(refused.code, 'BRIDGE_OVERLOADED');
    assert.equal(refused.status, 503);
    assert.equal(publisher.inFlight, 3, 'a refused request holds no slot');
    publisher.release();
    assert.equal(publisher.admit(), undefined);
    for (let i = 0; i < 3; i++) publisher.release();
    assert.equal(publisher.inFlight, 0);
  });
});

describe('WriteCoalescer on an amqplib connection', { timeout: 60_000 }, () => {
  let broker: TestBroker;

  before(async () => {
    broker = await openBroker();
  });
  after(async () => {
    await broker?.close();
  });

  /** Counts how many times the socket hands data to the kernel (one _write or _writev each). */
  function countWrites(socket: Socket): { count(): number; restore(): void } {
    let calls = 0;
    const write = socket._write;
    const writev = socket._writev;
    socket._write = function (this: Socket, chunk, encoding, cb) {
      calls += 1;
      write.call(this, chunk, encoding, cb);
    };
    if (writev) {
      socket._writev = function (this: Socket, chunks, cb) {
        calls += 1;
        writev.call(this, chunks, cb);
      };
    }
    return {
      count: () => calls,
      restore: () => {
        socket._write = write;
        if (writev) socket._writev = writev;
      },
    };
  }

  /** Publishes `n` messages in one synchronous loop, then waits for every confirm. */
  /** Publishes n messages in one turn, calling `afterEach` after each publish as Publisher does. */
  async function publishBurst(channel: ConfirmChannel, queue: string, n: number, afterEach?: () => void): Promise<void> {
    const confirms: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) {
      confirms.push(
        new Promise<void>((resolve, reject) => {
          channel.publish('', queue, Buffer.from(`<m i="${i}"/>`), { persistent: true }, (err: unknown) =>
            err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
          );
          afterEach?.();
        }),
      );
    }
    await Promise.all(confirms);
  }

  it('finds the socket under an amqplib ChannelModel and coalesces one turn of publishes into a few writes', async () => {
    // heartbeat=0: no heartbeat frame may land in the counted window.
    const model = await amqplib.connect(`${AMQP_URL}?heartbeat=0`, { noDelay: true });
    const closed = once(model, 'close');
    try {
      const socket = socketOf(model);
      assert.ok(socket, 'socketOf must find the net.Socket (guards against an amqplib upgrade moving it)');
      const coalescer = WriteCoalescer.forSocket(socket);
      assert.ok(coalescer);
      const channel = await model.createConfirmChannel();
      const queue = await broker.queue(uniqueName('coalesce'));

      const held = countWrites(socket);
      await publishBurst(channel, queue, 100, () => coalescer.hold());
      held.restore();

      const plain = countWrites(socket);
      await publishBurst(channel, queue, 100);
      plain.restore();

      assert.ok(held.count() >= 1 && held.count() <= 3, `held: ${held.count()} socket writes for 100 publishes`);
      assert.ok(plain.count() > held.count(), `without hold(): ${plain.count()} writes, with: ${held.count()}`);
      assert.equal(await broker.count(queue), 200);
      await channel.close();
    } finally {
      await model.close();
      await closed;
    }
  });

  it('has nothing to hold without a socket', () => {
    assert.equal(WriteCoalescer.forSocket(undefined), undefined);
  });
});
