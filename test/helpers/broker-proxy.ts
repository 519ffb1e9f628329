/** A loopback TCP proxy in front of the shared RabbitMQ that a test can cut and restore: "broker down" for one bridge without touching the broker. */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface BrokerProxy {
  readonly port: number;
  /** `amqp://guest:guest@127.0.0.1:<port>/`: the bridge's URL through the proxy. */
  readonly url: string;
  /** Forward new connections to the broker. */
  up(): void;
  /** Destroy every forwarded connection and accept-then-close new ones (a broker that is gone). */
  down(): void;
  /** Stop passing the broker's bytes to the bridge (a frozen broker: no confirm, no reply arrives). */
  freeze(): void;
  /** Pass them again, from where they stopped. */
  thaw(): void;
  /** Connections forwarded so far (for diagnostics). */
  readonly forwarded: () => number;
  close(): Promise<void>;
}

export async function startBrokerProxy(options: {
  up: boolean;
  target?: { host: string; port: number };
}): Promise<BrokerProxy> {
  const target = options.target ?? { host: '127.0.0.1', port: 5672 };
  let isUp = options.up;
  let frozen = false;
  let forwarded = 0;
  const pairs = new Set<readonly [Socket, Socket]>();
  const server: Server = createServer((client) => {
    if (!isUp) {
      client.destroy();
      return;
    }
    forwarded += 1;
    const upstream = connect(target.port, target.host);
    const pair: readonly [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    client.pipe(upstream);
    if (frozen) upstream.pause();
    else upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('proxy has no address');
  return {
    port: address.port,
    url: `amqp://guest:guest@127.0.0.1:${address.port}/`,
    up: () => {
      isUp = true;
    },
    down: () => {
      isUp = false;
      for (const [a, b] of [...pairs]) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    freeze: () => {
      if (frozen) return;
      frozen = true;
      for (const [client, upstream] of pairs) {
        upstream.unpipe(client);
        upstream.pause();
      }
    },
    thaw: () => {
      // Idempotent: piping a stream twice would hand the bridge every broker byte twice.
      if (!frozen) return;
      frozen = false;
      for (const [client, upstream] of pairs) upstream.pipe(client);
    },
    forwarded: () => forwarded,
    close: async () => {
      isUp = false;
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
