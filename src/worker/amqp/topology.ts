/** Declares the configured exchanges, queues and bindings; runs on every channel (re)open. */
import type { Channel } from 'amqplib';
import type { Config } from '../../shared/config-schema.js';

export async function assertTopology(
  channel: Channel,
  topology: Config['topology'],
): Promise<void> {
  for (const ex of topology.exchanges) {
    await channel.assertExchange(ex.name, ex.type, {
      durable: ex.durable,
      autoDelete: ex.autoDelete,
      internal: ex.internal,
      arguments: { ...ex.arguments },
    });
  }
  for (const q of topology.queues) {
    await channel.assertQueue(q.name, {
      durable: q.durable,
      autoDelete: q.autoDelete,
      arguments: { ...q.arguments },
    });
  }
  for (const b of topology.bindings) {
    await channel.bindQueue(b.queue, b.exchange, b.routingKey, { ...b.arguments });
  }
}
