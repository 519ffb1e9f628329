/**
 * BrokerLink + Publisher + Admission against the real broker, without HTTP: every publish
 * outcome told apart by the broker's own frames, the record each publish settles, admission,
 * channel recovery, confirm deadlines, and the frames of one turn leaving in one socket write.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { ConfirmChannel } from 'amqplib';
import { BrokerLink } from '../../src/worker/amqp/connection.js';
import { Publisher } from '../../src/worker/amqp/publisher.js';
import { PublishTemplate } from '../../src/worker/amqp/frames.js';
import { wireOf } from '../../src/worker/amqp/wire.js';
import { Admission } from '../../src/worker/admission.js';
import { RequestRecord } from '../../src/worker/request.js';
import { BridgeError, type ErrorCode } from '../../src/shared/errors.js';
import type { Config } from '../../src/shared/config-schema.js';
import { AMQP_URL } from '../helpers/bridge.js';
import { startBrokerProxy, type BrokerProxy } from '../helpers/broker-proxy.js';
import { openBroker, rabbitmqctl, uniqueName, type TestBroker } from '../helpers/broker.js';

const CONFIRM_TIMEOUT_MS = 20_000;
/** How long a replaced channel stays open in these tests. */
const RETIRE_MS = 300;

function amqpOptions(over: Partial<Config['amqp']> = {}): Config['amqp'] {
  return {
    urls: [AMQP_URL],
    heartbeatSeconds: 5,
    reconnectSeconds: 0.2,
    maxInFlight: 3,
    confirmTimeoutMs: CONFIRM_TIMEOUT_MS,
    stallMs: 0,
    ...over,
  };
}

/** A fresh template: to the publisher, a route of its own (it tracks which routes confirmed). */
function newTemplate(exchange: string): PublishTemplate {
  return new PublishTemplate({
    exchange,
    mandatory: true,
    persistent: true,
    appId: 'xml-amqp-bridge',
    correlationId: false,
    constantHeaders: { 'x-http-path': '/integration' },
    headerNames: ['x-request-id'],
  });
}

const templates = new Map<string, PublishTemplate>();
/** One template per exchange, as a route has one for the life of a worker. */
function templateFor(exchange: string): PublishTemplate {
  let template = templates.get(exchange);
  if (template === undefined) {
    template = newTemplate(exchange);
    templates.set(exchange, template);
  }
  return template;
}

/** Records of settled publishes, for asserting what each publish wrote into its request's record. */
const settled: RequestRecord[] = [];

/** Publishes one message as a mode does: fields, a unique track id, a record that ends when settled. */
function send(
  publisher: Publisher,
  exchange: string,
  routingKey: string,
  body: Buffer | string,
  messageId: string = randomUUID(),
  template: PublishTemplate = templateFor(exchange),
): Promise<void> {
  const requestId = randomUUID();
  const record = new RequestRecord('integration', requestId, performance.now(), {
    published: () => undefined,
    ended: (r) => settled.push(r),
  });
  const done = publisher.publish(
    template,
    {
      routingKey,
      contentType: 'application/xml',
      messageId,
      correlationId: '',
      timestampSeconds: Math.floor(Date.now() / 1000),
      headerValues: [requestId],
      body: Buffer.from(body),
    },
    requestId,
    record,
  );
  // The answer part of the request: the record ends once the publish settled too.
  record.end();
  return done;
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
  let admission: Admission;
  let exchange: string;
  const connectionName = uniqueName('publisher-link');

  before(async () => {
    broker = await openBroker();
    exchange = await broker.exchange(uniqueName('pub-ex'), 'topic');
    link = new BrokerLink({
      amqp: amqpOptions(),
      topology: { exchanges: [], queues: [], bindings: [] },
      connectionName,
      retireMs: RETIRE_MS,
    });
    // Before start(): the Publisher attaches to every channel the link emits, the first included.
    publisher = new Publisher(link, { confirmTimeoutMs: CONFIRM_TIMEOUT_MS, stallMs: 0 });
    admission = new Admission(link, publisher, {
      maxInFlight: 3,
      confirmTimeoutMs: CONFIRM_TIMEOUT_MS,
      stallMs: 0,
      maxUploads: 4,
    });
    const first = once(link, 'channel');
    link.start();
    await first;
    assert.equal(link.ready, true);
    assert.equal(link.state, 'connected');
  });

  after(async () => {
    publisher?.close();
    await link?.close();
    await broker?.close();
  });

  it('resolves a confirmed publish, the message is in the queue byte for byte, and the record says confirmed', async () => {
    const queue = await broker.queue(uniqueName('pub-ok'));
    const body = Buffer.from('<xml><a>é中</a></xml>');
    const before = settled.length;
    await send(publisher, '', queue, body, 'confirmed-1');
    const got = await broker.drain(queue);
    assert.equal(got.length, 1);
    const msg = got[0];
    assert.ok(msg);
    assert.deepEqual(msg.content, body);
    assert.equal(msg.properties.messageId, 'confirmed-1');
    assert.equal(msg.properties.deliveryMode, 2);
    assert.equal(msg.properties.appId, 'xml-amqp-bridge');
    assert.equal(msg.properties.headers?.['x-http-path'], '/integration');
    const record = settled[before];
    assert.equal(settled.length, before + 1, 'the record ended once');
    assert.equal(record?.publish, 'confirmed');
    assert.ok((record?.confirmSeconds ?? -1) >= 0);
  });

  it('rejects a mandatory publish nobody is bound for with BRIDGE_UNROUTABLE (outcome returned)', async () => {
    const before = settled.length;
    await assert.rejects(
      send(publisher, exchange, 'nobody.is.bound', '<a/>'),
      isBridgeError('BRIDGE_UNROUTABLE'),
    );
    assert.equal(settled[before]?.publish, 'returned');
    // The return did not cost the channel.
    assert.equal(link.ready, true);
  });

  it('maps a missing exchange to BRIDGE_UNROUTABLE, reopens the channel, and publishes again', async () => {
    const queue = await broker.queue(uniqueName('pub-recover'));
    for (let round = 0; round < 3; round++) {
      const reopened = once(link, 'channel');
      await assert.rejects(
        send(publisher, uniqueName('missing-ex'), 'x', '<a/>'),
        isBridgeError('BRIDGE_UNROUTABLE'),
      );
      await reopened;
      assert.equal(link.ready, true);
      await send(publisher, '', queue, `<round n="${round}"/>`);
    }
    assert.equal((await broker.drain(queue)).length, 3);
  });

  it('maps a broker nack (full reject-publish queue) to BRIDGE_PUBLISH_NACKED, told by the nack frame', async () => {
    const queue = await broker.queue(uniqueName('pub-full'), {
      'x-max-length': 1,
      'x-overflow': 'reject-publish',
    });
    await send(publisher, '', queue, '<first/>');
    const before = settled.length;
    await assert.rejects(
      send(publisher, '', queue, '<second/>'),
      isBridgeError('BRIDGE_PUBLISH_NACKED'),
    );
    assert.equal(settled[before]?.publish, 'nacked');
    // A nack is not a channel error: the same channel keeps working.
    assert.equal(link.ready, true);
    const got = await broker.drain(queue);
    assert.deepEqual(
      got.map((m) => m.content.toString()),
      ['<first/>'],
    );
  });

  it('keeps the channel when a route that confirmed on it is nacked (a full queue is no stuck channel)', async () => {
    const queue = await broker.queue(uniqueName('pub-proven'), {
      'x-max-length': 1,
      'x-overflow': 'reject-publish',
    });
    const route = newTemplate('');
    const channel = link.channel;
    let replaced = 0;
    const count = (): void => void (replaced += 1);
    publisher.on('replace', count);
    try {
      await send(publisher, '', queue, '<fits/>', randomUUID(), route);
      await assert.rejects(
        send(publisher, '', queue, '<nacked/>', randomUUID(), route),
        isBridgeError('BRIDGE_PUBLISH_NACKED'),
      );
      // A replacement would be asked for by a timer due at once: a round trip later it is done.
      await send(publisher, '', await broker.queue(uniqueName('pub-proven-next')), '<next/>');
      assert.equal(replaced, 0);
      assert.equal(link.channel, channel, 'the same channel');
    } finally {
      publisher.off('replace', count);
    }
    await broker.drain(queue);
  });

  it('replaces the channel when a route is nacked before any of its publishes confirmed there, at growing gaps while that goes on', async () => {
    // Every publish to this queue is nacked, as on a channel stuck on a quorum queue's dead
    // leader (RabbitMQ 3.10, docs/failure-modes.md #18): the route never confirms on a channel.
    const refusing = await broker.queue(uniqueName('pub-refusing'), {
      'x-max-length': 0,
      'x-overflow': 'reject-publish',
    });
    const good = await broker.queue(uniqueName('pub-refusing-good'));
    const route = newTemplate('');
    const first = link.channel;
    assert.ok(first !== undefined);
    const replacements: number[] = [];
    const note = (): void => void replacements.push(performance.now());
    publisher.on('replace', note);
    try {
      const fresh = once(link, 'channel');
      await assert.rejects(
        send(publisher, '', refusing, '<a/>', randomUUID(), route),
        isBridgeError('BRIDGE_PUBLISH_NACKED'),
      );
      const [second] = (await fresh) as [ConfirmChannel];
      assert.notEqual(second, first, 'a new channel');
      assert.equal(link.channel, second);
      assert.equal(link.ready, true);
      // The replaced channel closes once its answers are in: after retireMs.
      await once(first, 'close');
      // Still nacked on the new channel: replaced again, but not sooner than the first gap.
      const third = once(link, 'channel');
      await assert.rejects(
        send(publisher, '', refusing, '<b/>', randomUUID(), route),
        isBridgeError('BRIDGE_PUBLISH_NACKED'),
      );
      await third;
      assert.equal(replacements.length, 2);
      const gap = (replacements[1] ?? 0) - (replacements[0] ?? 0);
      assert.ok(gap >= 49, `second replacement ${gap.toFixed(0)} ms after the first`);
      // Other routes publish on throughout.
      await send(publisher, '', good, '<fine/>');
      assert.equal(await broker.count(good), 1);
    } finally {
      publisher.off('replace', note);
    }
    await broker.drain(good);
  });

  it('settles every publish in flight on a replaced channel, and publishes on the new one at once', async () => {
    const queue = await broker.queue(uniqueName('pub-swap'));
    const old = link.channel;
    assert.ok(old !== undefined);
    const before = Array.from({ length: 200 }, (_, i) =>
      send(publisher, '', queue, `<b i="${i}"/>`),
    );
    assert.ok(publisher.unconfirmed > 0, 'publishes wait on the old channel');
    const swapped = once(link, 'channel');
    assert.equal(link.replaceChannel(), true);
    assert.equal(link.replaceChannel(), false, 'one replacement at a time');
    await swapped;
    assert.notEqual(link.channel, old);
    const after = Array.from({ length: 200 }, (_, i) =>
      send(publisher, '', queue, `<a i="${i}"/>`),
    );
    await Promise.all([...before, ...after]);
    assert.equal(publisher.unconfirmed, 0);
    assert.equal(await broker.count(queue), 400);
    await once(old, 'close');
    assert.equal(link.ready, true);
    await broker.drain(queue);
  });

  it('settles many publishes of one turn, each with its own outcome, in any order the broker confirms them', async () => {
    const good = await broker.queue(uniqueName('pub-mixed'));
    const full = await broker.queue(uniqueName('pub-mixed-full'), {
      'x-max-length': 1,
      'x-overflow': 'reject-publish',
    });
    const outcomes = await Promise.all(
      Array.from({ length: 60 }, (_, i) => {
        const target =
          i % 3 === 0 ? ['', good] : i % 3 === 1 ? [exchange, 'nobody.is.bound'] : ['', full];
        return send(publisher, target[0] ?? '', target[1] ?? '', `<m i="${i}"/>`).then(
          () => 'ok',
          (err: unknown) => (err instanceof BridgeError ? err.code : String(err)),
        );
      }),
    );
    assert.deepEqual(
      outcomes.filter((_, i) => i % 3 === 0),
      Array(20).fill('ok'),
    );
    assert.deepEqual(
      outcomes.filter((_, i) => i % 3 === 1),
      Array(20).fill('BRIDGE_UNROUTABLE'),
    );
    const toFull = outcomes.filter((_, i) => i % 3 === 2);
    assert.equal(toFull[0], 'ok', 'the first message fits the full queue');
    assert.deepEqual(toFull.slice(1), Array(19).fill('BRIDGE_PUBLISH_NACKED'));
    assert.equal(await broker.count(good), 20);
  });

  it('fails every in-flight publish with BRIDGE_CONNECTION_LOST when the connection is closed, then recovers', async () => {
    // Keeps the queue small while the loop publishes flat out until the connection drops.
    const queue = await broker.queue(uniqueName('pub-cut'), { 'x-max-length': 100 });
    const outcomes: Array<Promise<ErrorCode | 'ok'>> = [];
    let stop = false;
    const launch = (): void => {
      if (stop || link.channel === undefined) return;
      outcomes.push(
        send(publisher, '', queue, '<x>in flight</x>').then(
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
        refusedWhileDown = admission.admit();
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
    const results = await Promise.all(outcomes);
    // The broker may ack everything it had before it closes the connection, so the number of
    // publishes caught in flight varies; every one that was must fail as a retryable 503.
    for (const f of results.filter((o) => o !== 'ok')) assert.equal(f, 'BRIDGE_CONNECTION_LOST');
    assert.ok(
      results.filter((o) => o === 'ok').length > 0,
      'publishes went through before the close',
    );
    assert.ok(
      refusedWhileDown instanceof BridgeError,
      'admit() refused while the channel was gone',
    );
    assert.equal(refusedWhileDown.code, 'BRIDGE_BROKER_UNAVAILABLE');
    await reopened;
    assert.equal(link.ready, true);
    const afterQueue = await broker.queue(uniqueName('pub-after'));
    await send(publisher, '', afterQueue, '<after/>', 'after-reconnect');
    const got = await broker.drain(afterQueue);
    assert.equal(got.length, 1);
    assert.equal(got[0]?.properties.messageId, 'after-reconnect');
  });

  it('admits up to maxInFlight and answers BRIDGE_OVERLOADED beyond it until a release', async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal(admission.admit(), undefined);
      assert.equal(admission.bodyIn(), undefined);
    }
    assert.equal(admission.active, 3);
    assert.equal(admission.inFlight, 3);
    const refused = admission.admit();
    assert.ok(refused instanceof BridgeError);
    assert.equal(refused.code, 'BRIDGE_OVERLOADED');
    assert.equal(refused.status, 503);
    assert.match(refused.message, /maxInFlight \(3\)/);
    assert.equal(admission.active, 3, 'a refused request holds no slot');
    let idle = false;
    const idleNow = admission.idle().then(() => {
      idle = true;
    });
    admission.release('flight');
    assert.equal(admission.admit(), undefined);
    assert.equal(admission.bodyIn(), undefined);
    for (let i = 0; i < 2; i++) admission.release('flight');
    assert.equal(idle, false, 'not idle while one request is in flight');
    admission.release('flight');
    await idleNow;
    assert.equal(admission.active, 0);
  });

  it('counts bodies still streaming in against maxUploads, never against maxInFlight', () => {
    // Four slow uploads fill maxUploads (4) but none of maxInFlight (3).
    for (let i = 0; i < 4; i++) assert.equal(admission.admit(), undefined);
    assert.equal(admission.inFlight, 0);
    const refused = admission.admit();
    assert.ok(refused instanceof BridgeError);
    assert.equal(refused.code, 'BRIDGE_OVERLOADED');
    assert.match(refused.message, /maxUploads \(4\)/);
    // Three of them finish their bodies and wait on the broker: the fourth's body, once in,
    // finds maxInFlight taken and is refused; it still holds its upload slot until released.
    for (let i = 0; i < 3; i++) assert.equal(admission.bodyIn(), undefined);
    assert.equal(admission.inFlight, 3);
    const late = admission.bodyIn();
    assert.ok(late instanceof BridgeError);
    assert.match(late.message, /maxInFlight \(3\)/);
    assert.equal(admission.active, 4);
    admission.release('upload');
    for (let i = 0; i < 3; i++) admission.release('flight');
    assert.equal(admission.active, 0);
  });

  it('is quiet only once no request is in flight and none came for the quiet spell (the drain waits for that)', async () => {
    assert.equal(admission.admit(), undefined);
    const admittedAt = performance.now();
    let quietAt = 0;
    const quiet = admission.quiet(150).then(() => {
      quietAt = performance.now();
    });
    admission.release('upload');
    // A request that arrives during the spell starts it again.
    await new Promise((r) => setTimeout(r, 50)); // lets part of the spell pass
    assert.equal(admission.admit(), undefined);
    const secondAt = performance.now();
    admission.release('upload');
    await quiet;
    assert.ok(
      quietAt - secondAt >= 149,
      `quiet ${Math.round(quietAt - secondAt)} ms after the last admission`,
    );
    assert.ok(quietAt - admittedAt >= 199);
  });
});

/** A link, publisher and admission reaching the shared broker through a proxy that can freeze. */
interface FreezableStack {
  readonly broker: TestBroker;
  readonly proxy: BrokerProxy;
  readonly publisher: Publisher;
  readonly admission: Admission;
  /** A fresh queue of the test's, deleted by close(). */
  readonly queue: string;
  readonly close: () => Promise<void>;
}

async function startFreezableStack(
  label: string,
  confirmTimeoutMs: number,
  stallMs: number,
): Promise<FreezableStack> {
  const broker = await openBroker();
  const proxy = await startBrokerProxy({ up: true });
  const link = new BrokerLink({
    amqp: amqpOptions({ urls: [proxy.url], confirmTimeoutMs, stallMs }),
    topology: { exchanges: [], queues: [], bindings: [] },
    connectionName: uniqueName(label),
  });
  const publisher = new Publisher(link, { confirmTimeoutMs, stallMs });
  const admission = new Admission(link, publisher, {
    maxInFlight: 1000,
    confirmTimeoutMs,
    stallMs,
    maxUploads: 1000,
  });
  const close = async (): Promise<void> => {
    proxy.thaw();
    publisher.close();
    // Every step runs: a link that fails to close must not leave the proxy and broker open.
    const results = await Promise.allSettled([link.close()]);
    await proxy.close();
    await broker.close();
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  };
  try {
    const first = once(link, 'channel');
    link.start();
    await first;
    const queue = await broker.queue(uniqueName(label));
    return { broker, proxy, publisher, admission, queue, close };
  } catch (err) {
    await close();
    throw err;
  }
}

describe('a broker that stops confirming (frozen behind a proxy)', { timeout: 60_000 }, () => {
  it('times publishes out with BRIDGE_CONFIRM_TIMEOUT, and admission refuses once the oldest waited half the timeout', async () => {
    const confirmTimeoutMs = 400;
    const { proxy, publisher, admission, queue, close } = await startFreezableStack(
      'frozen',
      confirmTimeoutMs,
      0,
    );
    try {
      await send(publisher, '', queue, '<before/>');
      proxy.freeze();
      assert.equal(admission.admit(), undefined, 'admitted while nothing waits');
      admission.release('upload');
      const before = settled.length;
      const started = performance.now();
      const timedOut = send(publisher, '', queue, '<frozen/>');
      // Half the timeout later, the waiting publish makes admission refuse new requests.
      await new Promise((r) => setTimeout(r, confirmTimeoutMs / 2 + 60)); // waiting for time itself to pass
      const refused = admission.admit();
      assert.ok(
        refused instanceof BridgeError,
        'refused while a publish has waited half the confirm timeout',
      );
      assert.equal(refused.code, 'BRIDGE_OVERLOADED');
      await assert.rejects(timedOut, isBridgeError('BRIDGE_CONFIRM_TIMEOUT'));
      const waited = performance.now() - started;
      assert.ok(
        waited >= confirmTimeoutMs && waited < confirmTimeoutMs * 2,
        `timed out after ${Math.round(waited)} ms`,
      );
      assert.equal(settled[before]?.publish, 'timeout');
      proxy.thaw();
      // Nothing waits any more: admission takes requests again.
      assert.equal(admission.admit(), undefined);
      admission.release('upload');
    } finally {
      await close();
    }
  });
});

describe(
  'a stalled broker (frozen behind a proxy) is noticed after stallMs, not by heartbeats',
  { timeout: 60_000 },
  () => {
    it('calls the broker stalled once publishes waited stallMs with no confirm, refuses at once, and recovers on the next confirm', async () => {
      const stallMs = 300;
      const stack = await startFreezableStack('stall', 10_000, stallMs);
      const { broker, proxy, publisher, admission, queue } = stack;
      try {
        await send(publisher, '', queue, '<before/>');
        assert.equal(publisher.stalled, false);
        proxy.freeze();
        const stalled = once(publisher, 'stall');
        const started = performance.now();
        const waiting = send(publisher, '', queue, '<frozen/>');
        assert.deepEqual(await stalled, [true]);
        const noticedAfter = performance.now() - started;
        assert.ok(
          noticedAfter >= stallMs && noticedAfter < stallMs + 1000,
          `noticed after ${Math.round(noticedAfter)} ms`,
        );
        const refused = admission.admit();
        assert.ok(refused instanceof BridgeError, 'refused while stalled');
        assert.equal(refused.code, 'BRIDGE_BROKER_UNAVAILABLE');
        assert.equal(refused.status, 503);
        assert.match(refused.message, /stalled/);
        const resumed = once(publisher, 'stall');
        proxy.thaw();
        // The frozen publish is confirmed after all: its request gets its 2xx.
        await waiting;
        assert.deepEqual(await resumed, [false]);
        assert.equal(admission.admit(), undefined, 'admitted again after the confirm');
        admission.release('upload');
        assert.equal((await broker.drain(queue)).length, 2);
      } finally {
        await stack.close();
      }
    });

    it('lets one request per stallMs through as a probe once every waiting publish timed out, and recovers on its confirm', async () => {
      const stallMs = 200;
      const stack = await startFreezableStack('stall-probe', 700, stallMs);
      const { proxy, publisher, admission, queue } = stack;
      try {
        proxy.freeze();
        const stalled = once(publisher, 'stall');
        const timedOut = send(publisher, '', queue, '<never-confirmed/>');
        assert.deepEqual(await stalled, [true]);
        await assert.rejects(timedOut, isBridgeError('BRIDGE_CONFIRM_TIMEOUT'));
        assert.equal(publisher.stalled, true, 'still stalled: no confirm came');
        assert.equal(admission.admit(), undefined, 'nothing waits: one request may probe');
        const second = admission.admit();
        assert.ok(second instanceof BridgeError, 'only one probe per stallMs');
        assert.match(second.message, /stalled/);
        const recovered = once(publisher, 'stall');
        const probe = send(publisher, '', queue, '<probe/>');
        proxy.thaw();
        await probe;
        assert.deepEqual(await recovered, [false]);
        admission.release('upload');
        assert.equal(admission.admit(), undefined, 'served again');
        admission.release('upload');
      } finally {
        await stack.close();
      }
    });
  },
);

describe('FrameWriter on the publisher channel', { timeout: 60_000 }, () => {
  /** Counts how many times the socket hands data to the kernel (one _write or _writev each). */
  function countWrites(socket: Socket): { count(): number; restore(): void } {
    let calls = 0;
    // Kept to be called with the socket as `this` and put back as they were.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const write = socket._write;
    // eslint-disable-next-line @typescript-eslint/unbound-method
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

  it('sends the publishes of one turn in one socket write, and every message arrives', async () => {
    const broker = await openBroker();
    // heartbeat 0: no heartbeat frame may land in the counted window.
    const link = new BrokerLink({
      amqp: amqpOptions({ urls: [`${AMQP_URL}?heartbeat=0`], heartbeatSeconds: 0 }),
      topology: { exchanges: [], queues: [], bindings: [] },
      connectionName: uniqueName('writer'),
    });
    const publisher = new Publisher(link, { confirmTimeoutMs: CONFIRM_TIMEOUT_MS, stallMs: 0 });
    try {
      const first = once(link, 'channel');
      link.start();
      const [channel] = (await first) as [ConfirmChannel];
      const socket = wireOf(channel).socket;
      const queue = await broker.queue(uniqueName('coalesce'));
      const counted = countWrites(socket);
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => send(publisher, '', queue, `<m i="${i}"/>`)),
      );
      counted.restore();
      assert.equal(
        counted.count(),
        1,
        `${counted.count()} socket writes for 100 publishes of one turn`,
      );
      assert.equal(await broker.count(queue), 100);
    } finally {
      publisher.close();
      await link.close();
      await broker.close();
    }
  });
});
