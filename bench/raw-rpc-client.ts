/**
 * The raw request/reply rate: a plain amqplib client keeping `concurrency` requests in flight
 * over direct reply-to against the same responder the bridge uses, for `seconds`.
 * Prints one JSON line. Usage: node dist/bench/raw-rpc-client.js QUEUE [seconds=10] [concurrency=1]
 */
import { randomUUID } from 'node:crypto';
import amqplib from 'amqplib';

const [queue, secondsArg = '10', concurrencyArg = '1'] = process.argv.slice(2);
if (queue === undefined) throw new Error('usage: raw-rpc-client QUEUE [seconds] [concurrency]');
const seconds = Number(secondsArg);
const concurrency = Number(concurrencyArg);
const body = Buffer.from(`<xml><MsgType>order</MsgType><pad>${'x'.repeat(980)}</pad></xml>`);

const conn = await amqplib.connect('amqp://guest:guest@127.0.0.1:5672/', { noDelay: true });
const ch = await conn.createChannel();
const waiting = new Map<string, number>();
const latencies: number[] = [];
let replies = 0;
let stop = false;
let send = (): void => undefined;
await ch.consume(
  'amq.rabbitmq.reply-to',
  (msg) => {
    const id: unknown = msg?.properties.correlationId;
    const started = typeof id === 'string' ? waiting.get(id) : undefined;
    if (started === undefined || typeof id !== 'string') return;
    waiting.delete(id);
    replies++;
    latencies.push(performance.now() - started);
    if (!stop) send();
  },
  { noAck: true },
);
send = (): void => {
  const id = randomUUID();
  waiting.set(id, performance.now());
  ch.publish('', queue, body, {
    correlationId: id,
    replyTo: 'amq.rabbitmq.reply-to',
    persistent: true,
    expiration: '5000',
  });
};
const t0 = performance.now();
for (let i = 0; i < concurrency; i++) send();
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
stop = true;
const elapsed = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number): number =>
  latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
process.stdout.write(
  `${JSON.stringify({ rate: replies / elapsed, concurrency, p50: pct(0.5), p99: pct(0.99) })}\n`,
);
await ch.close();
await conn.close();
