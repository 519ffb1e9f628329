/**
 * The broker's raw ingest rate: a plain amqplib ConfirmChannel publisher keeping `window`
 * persistent 1 KiB messages unconfirmed, for `seconds`. Prints one JSON line with msgs/s.
 * Usage: node dist/bench/raw-publisher.js QUEUE [seconds=10] [window=256] [format=bare|bridge] [type=classic|quorum] [url]
 * `url` defaults to the shared broker, amqp://guest:guest@127.0.0.1:5672/ (bench/cluster-throughput.ts
 * passes its private nodes').
 *
 * `bridge` sends the properties and headers the bridge sets (README, "The AMQP message"): the like-for-like
 * ceiling, since encoding and routing those costs the broker about a quarter of its rate here.
 */
import { randomUUID } from 'node:crypto';
import amqplib from 'amqplib';

const [
  queue,
  secondsArg = '10',
  windowArg = '256',
  format = 'bare',
  queueType = 'classic',
  url = 'amqp://guest:guest@127.0.0.1:5672/',
] = process.argv.slice(2);
if (queue === undefined)
  throw new Error('usage: raw-publisher QUEUE [seconds] [window] [format] [type] [url]');
const seconds = Number(secondsArg);
const window = Number(windowArg);
const body = Buffer.alloc(1024, 'x');
let seq = 0;
const options = (): amqplib.Options.Publish =>
  format === 'bridge'
    ? {
        persistent: true,
        mandatory: true,
        contentType: 'text/xml; charset=utf-8',
        messageId: `raw-${++seq}`,
        timestamp: Math.floor(Date.now() / 1000),
        appId: 'xml-amqp-bridge',
        headers: {
          'x-http-method': 'POST',
          'x-http-path': '/wechat/notify',
          'x-http-query': '',
          'x-remote-addr': '127.0.0.1',
          'x-request-id': randomUUID(),
          'x-xml-root': 'xml',
        },
      }
    : { persistent: true, mandatory: true };

const conn = await amqplib.connect(url, { noDelay: true });
const ch = await conn.createConfirmChannel();
// Re-declaring with other arguments than the queue has would close the channel (406).
await ch.assertQueue(queue, {
  durable: true,
  arguments: queueType === 'quorum' ? { 'x-queue-type': 'quorum' } : {},
});
let confirmed = 0;
let inFlight = 0;
let stop = false;
const started = performance.now();
await new Promise<void>((resolve) => {
  const pump = (): void => {
    while (!stop && inFlight < window) {
      inFlight++;
      ch.publish('', queue, body, options(), (err: unknown) => {
        inFlight--;
        if (err === null || err === undefined) confirmed++;
        if (stop) {
          if (inFlight === 0) resolve();
        } else pump();
      });
    }
  };
  setTimeout(() => {
    stop = true;
  }, seconds * 1000);
  pump();
});
const elapsed = (performance.now() - started) / 1000;
process.stdout.write(
  `${JSON.stringify({ confirmed, seconds: elapsed, rate: confirmed / elapsed, window, format })}\n`,
);
await ch.close();
await conn.close();
