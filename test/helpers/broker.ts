/**
 * Test-side RabbitMQ access over amqplib: unique names per test, reading back what the bridge
 * published, and cleanup. Talks to the real broker on 127.0.0.1:5672.
 */
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import amqplib, { type Channel, type ChannelModel, type GetMessage, type Message } from 'amqplib';
import { AMQP_URL } from './bridge.js';

const execFileAsync = promisify(execFile);

/** The message_id of each message ('undefined' where one has none), in order. */
export function messageIds(messages: readonly Message[]): string[] {
  return messages.map((m) => String(m.properties.messageId));
}

/** A name no other test uses: `test-<what>-<uuid>`. */
export function uniqueName(what: string): string {
  return `test-${what}-${randomUUID().slice(0, 8)}`;
}

export interface TestBroker {
  readonly connection: ChannelModel;
  readonly channel: Channel;
  /** Declares a durable queue that `close()` deletes. */
  queue(name: string, args?: Record<string, unknown>): Promise<string>;
  /** Declares an exchange that `close()` deletes. */
  exchange(name: string, type: string): Promise<string>;
  /** Drains a queue with basic.get until it is empty. */
  drain(queue: string): Promise<GetMessage[]>;
  /** Number of ready messages in a queue. */
  count(queue: string): Promise<number>;
  close(): Promise<void>;
}

/** Test-side access to the shared broker, or to another one (a private node: `url`). */
export async function openBroker(url: string = AMQP_URL): Promise<TestBroker> {
  const connection = await amqplib.connect(url);
  let channel = await connection.createChannel();
  const queues: string[] = [];
  const exchanges: string[] = [];
  const fresh = async (): Promise<Channel> => {
    // a failed passive check closes a channel; keep one usable
    channel = await connection.createChannel();
    return channel;
  };
  return {
    connection,
    get channel() {
      return channel;
    },
    async queue(name, args = {}) {
      await channel.assertQueue(name, { durable: true, arguments: args });
      queues.push(name);
      return name;
    },
    async exchange(name, type) {
      await channel.assertExchange(name, type, { durable: false, autoDelete: false });
      exchanges.push(name);
      return name;
    },
    async drain(queue) {
      const out: GetMessage[] = [];
      for (;;) {
        const msg = await channel.get(queue, { noAck: true });
        if (msg === false) return out;
        out.push(msg);
      }
    },
    async count(queue) {
      return (await channel.checkQueue(queue)).messageCount;
    },
    async close() {
      const ch = await fresh();
      for (const q of queues) await ch.deleteQueue(q).catch(() => undefined);
      for (const e of exchanges) await ch.deleteExchange(e).catch(() => undefined);
      await connection.close();
    },
  };
}

/**
 * rabbitmqctl on the shared broker: for reading it and closing this suite's own connections only.
 * Alarms, stops and other changes go to a private node (private-broker.ts).
 */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('rabbitmqctl', args, { timeout: 60_000 });
  return stdout;
}
