/**
 * `check-config --broker`: asks the broker, without changing anything (passive declares), whether
 * every exchange and queue the routes and bindings name exists or is declared by `topology`. What
 * the bridge declares itself (topology, and Celery's defaults for celery routes) needs no broker
 * entry yet: it is asserted on connect.
 */
import amqplib, { type ChannelModel } from 'amqplib';
import type { Config } from '../shared/config-schema.js';
import { redactUrl } from '../shared/redact.js';

/** One thing the broker disagrees with, named by its path in the config. */
export interface BrokerDisagreement {
  readonly path: string;
  readonly message: string;
}

export type BrokerCheck =
  | { readonly reachable: false; readonly detail: string }
  | {
      readonly reachable: true;
      readonly url: string;
      readonly checked: number;
      readonly disagreements: readonly BrokerDisagreement[];
    };

interface Wanted {
  readonly kind: 'exchange' | 'queue';
  readonly name: string;
  /** Config paths that name it. */
  readonly paths: string[];
}

/** Whether a routing key template renders the same key for every body. */
const isConstant = (template: string): boolean => !/[{}]/.test(template);

/** Everything the config names that the bridge does not declare itself, by kind and name. */
function namedButNotDeclared(config: Config): Wanted[] {
  const declared = {
    exchange: new Set(['', ...config.topology.exchanges.map((e) => e.name)]),
    queue: new Set(config.topology.queues.map((q) => q.name)),
  };
  const wanted = new Map<string, Wanted>();
  const want = (kind: Wanted['kind'], name: string, path: string): void => {
    if (declared[kind].has(name)) return;
    const key = `${kind}:${name}`;
    const entry = wanted.get(key) ?? { kind, name, paths: [] };
    entry.paths.push(path);
    wanted.set(key, entry);
  };
  config.routes.forEach((route, i) => {
    if (route.mode === 'celery') return; // the bridge declares Celery's exchange, queue and binding
    want('exchange', route.exchange, `routes[${i}].exchange`);
    // Through the default exchange a constant routing key names a queue.
    if (route.exchange === '' && isConstant(route.routingKey))
      want('queue', route.routingKey, `routes[${i}].routingKey`);
  });
  config.topology.bindings.forEach((b, i) => {
    want('queue', b.queue, `topology.bindings[${i}].queue`);
    want('exchange', b.exchange, `topology.bindings[${i}].exchange`);
  });
  return [...wanted.values()];
}

async function connectFirst(
  urls: readonly string[],
): Promise<{ model: ChannelModel; url: string } | { error: string }> {
  const errors: string[] = [];
  for (const url of urls) {
    try {
      return { model: await amqplib.connect(url, { timeout: 5000 }), url: redactUrl(url) };
    } catch (err) {
      errors.push(`${redactUrl(url)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { error: errors.join('; ') };
}

// Imported dynamically by main.ts (check-config --broker only), which this check does not follow.
// ts-unused-exports:disable-next-line
export async function checkAgainstBroker(config: Config): Promise<BrokerCheck> {
  const connected = await connectFirst(config.amqp.urls);
  if ('error' in connected) return { reachable: false, detail: connected.error };
  const { model, url } = connected;
  const disagreements: BrokerDisagreement[] = [];
  const wanted = namedButNotDeclared(config);
  try {
    for (const w of wanted) {
      // A failed passive declare closes its channel (404): one channel per check.
      const channel = await model.createChannel();
      channel.on('error', () => undefined); // the 404 is read from the rejection below
      try {
        if (w.kind === 'exchange') await channel.checkExchange(w.name);
        else await channel.checkQueue(w.name);
        await channel.close();
      } catch (err) {
        const reason =
          err instanceof Error ? err.message.replace(/^Operation failed: \w+; /, '') : String(err);
        for (const path of w.paths) {
          disagreements.push({
            path,
            message: `${w.kind} "${w.name}" does not exist on the broker, and topology does not declare it (${reason})`,
          });
        }
      }
    }
  } finally {
    await model.close().catch(() => undefined);
  }
  return { reachable: true, url, checked: wanted.length, disagreements };
}
