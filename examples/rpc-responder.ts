/**
 * Reference backend for `rpc` routes: consumes requests from a queue and answers each one on its
 * `reply_to` with the same `correlation_id`. It shows the three rules a backend must follow:
 *   - publish the reply to the default exchange with routing key = `reply_to`;
 *   - copy `correlation_id`; set `content_type`, and the `http-status` header when not 200;
 *   - never publish replies with `mandatory` (direct reply-to answers always come back as
 *     unroutable returns although they were delivered: rabbitmq-server#6124).
 * It acks a request only after its reply was written, and skips requests whose caller is gone
 * (RabbitMQ drops expired ones; the bridge sets `expiration` to its timeout).
 *
 * Usage: node dist/examples/rpc-responder.js --queue orders.rpc [--url amqp://…] [--prefetch 256]
 *        [--delay-ms 0] [--status 200] [--state accepted]
 * The reply body is `<reply><received-bytes>N</received-bytes><echo>…request body…</echo></reply>`;
 * `--delay-ms` holds each reply that long (for timeout tests); `--status` sets `http-status`;
 * `--state` sets the `x-order-state` reply header. Prints `{"ready":true}` once consuming.
 */
import { parseArgs } from 'node:util';
import amqplib from 'amqplib';

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'amqp://guest:guest@127.0.0.1:5672/' },
    queue: { type: 'string' },
    prefetch: { type: 'string', default: '256' },
    'delay-ms': { type: 'string', default: '0' },
    status: { type: 'string', default: '200' },
    state: { type: 'string', default: 'accepted' },
  },
});
const queue = values.queue;
if (queue === undefined) throw new Error('--queue is required');
const delayMs = Number(values['delay-ms']);

const connection = await amqplib.connect(values.url, { noDelay: true });
const channel = await connection.createChannel();
await channel.assertQueue(queue, { durable: true });
await channel.prefetch(Number(values.prefetch));
await channel.consume(queue, (msg) => {
  if (msg === null) return;
  // amqplib types the properties `any`; a broker-delivered message may lack either.
  const replyTo: unknown = msg.properties.replyTo;
  const correlationId: unknown = msg.properties.correlationId;
  const answer = (): void => {
    if (typeof replyTo === 'string' && replyTo !== '') {
      const body = Buffer.concat([
        Buffer.from(`<reply><received-bytes>${msg.content.byteLength}</received-bytes><echo>`),
        msg.content.subarray(msg.content.indexOf('?>') === -1 ? 0 : msg.content.indexOf('?>') + 2),
        Buffer.from('</echo></reply>'),
      ]);
      channel.publish('', replyTo, body, {
        ...(typeof correlationId === 'string' ? { correlationId } : {}),
        contentType: 'application/xml',
        headers: { 'http-status': Number(values.status), 'x-order-state': values.state },
      });
    }
    channel.ack(msg);
  };
  if (delayMs > 0) setTimeout(answer, delayMs);
  else answer();
});
process.stdout.write(`${JSON.stringify({ ready: true, queue })}\n`);

const stop = async (): Promise<void> => {
  await channel.close().catch(() => undefined);
  await connection.close().catch(() => undefined);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
