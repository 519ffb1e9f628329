/**
 * The Node.js peer: Fastify + amqplib under node:cluster, written the way its users write it.
 * POST /notify publishes the body on a ConfirmChannel and answers 202 after the confirm;
 * POST /order publishes a request over direct reply-to and answers with the reply.
 *
 * Usage: node dist/bench/peers/fastify-amqplib.js --workers 2 [--queue Q] [--rpc-queue Q]
 * Prints `{"ready":true,"port":N}` once every worker listens (on one port picked by the cluster).
 */
import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import amqplib from 'amqplib';
import Fastify from 'fastify';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '1' },
    queue: { type: 'string', default: '' },
    'rpc-queue': { type: 'string', default: '' },
    url: { type: 'string', default: 'amqp://guest:guest@127.0.0.1:5672/' },
  },
});

if (cluster.isPrimary) {
  const workers = Number(values.workers);
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    if (++listening === workers)
      process.stdout.write(`${JSON.stringify({ ready: true, port: address.port })}\n`);
  });
  cluster.on('exit', (_worker, code) => {
    if (!stopping) process.stderr.write(`fastify peer: a worker exited (${code}) outside a stop\n`);
  });
  let stopping = false;
  const stop = (): void => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exitCode = 0;
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  // noDelay is the one setting a careful user adds (docs/failure-modes.md #11); without it rpc would suffer Nagle.
  const connection = await amqplib.connect(values.url, { noDelay: true });
  const confirm = await connection.createConfirmChannel();
  const rpc = await connection.createChannel();
  const waiting = new Map<string, (msg: amqplib.ConsumeMessage) => void>();
  await rpc.consume(
    'amq.rabbitmq.reply-to',
    (msg) => {
      const id: unknown = msg?.properties.correlationId;
      if (msg === null || typeof id !== 'string') return;
      waiting.get(id)?.(msg);
    },
    { noAck: true },
  );

  const app = Fastify({ logger: false });
  app.addContentTypeParser(
    ['text/xml', 'application/xml'],
    { parseAs: 'buffer' },
    (_req, body, done) => done(null, body),
  );

  // The same message the bridge publishes (README, "The AMQP message": mandatory, app_id, timestamp and the
  // x-http-* headers), since its consumers need them: the broker's work per message then matches
  // (those headers alone cost the broker about a quarter of its rate on this machine).
  app.post('/notify', async (req, reply) => {
    const body = req.body as Buffer; // the parser above hands XML bodies over as Buffers
    const requestId = randomUUID();
    await new Promise<void>((resolve, reject) =>
      confirm.publish(
        '',
        values.queue,
        body,
        {
          persistent: true,
          mandatory: true,
          contentType: req.headers['content-type'] ?? 'application/xml',
          messageId: randomUUID(),
          timestamp: Math.floor(Date.now() / 1000),
          appId: 'fastify-bridge',
          headers: {
            'x-http-method': req.method,
            'x-http-path': req.url.split('?')[0],
            'x-http-query': req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
            'x-remote-addr': req.ip,
            'x-request-id': requestId,
            'x-xml-root': 'xml',
          },
        },
        (err: unknown) =>
          err === null || err === undefined ? resolve() : reject(new Error('nacked')),
      ),
    );
    return reply.code(202).header('x-request-id', requestId).send();
  });

  app.post('/order', async (req, reply) => {
    const body = req.body as Buffer; // the parser above hands XML bodies over as Buffers
    const id = randomUUID();
    const answer = await new Promise<amqplib.ConsumeMessage | undefined>((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, 10_000);
      waiting.set(id, (msg) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(msg);
      });
      rpc.publish('', values['rpc-queue'], body, {
        correlationId: id,
        replyTo: 'amq.rabbitmq.reply-to',
        persistent: true,
        expiration: '10000',
        contentType: 'application/xml',
      });
    });
    if (answer === undefined) return reply.code(504).send('timeout');
    return reply
      .code(200)
      .type(String(answer.properties.contentType ?? 'application/xml'))
      .send(answer.content);
  });

  const stop = async (): Promise<void> => {
    await app.close();
    await connection.close().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  await app.listen({ host: '127.0.0.1', port: 0 });
}
