/** `publish` mode: one persistent mandatory message, answered only after the broker's confirm. */
import { Buffer } from 'node:buffer';
import { XmlError } from '../../shared/errors.js';
import { buildPublishOptions, type RequestFacts } from '../amqp/message.js';
import type { Publisher } from '../amqp/publisher.js';
import type { ReceivedBody } from '../http/body.js';
import type { ResponseSpec } from '../http/respond.js';
import type { CompiledRoute } from '../http/routes.js';

/** Renders the route's routing key from the body; an AMQP shortstr holds at most 255 bytes. */
export function routingKeyFor(route: CompiledRoute, received: ReceivedBody): string {
  const key = route.routingKey.render(received.summary.values);
  if (Buffer.byteLength(key) > 255) {
    throw new XmlError('routing-key', `the routing key built from the body is longer than 255 bytes`);
  }
  return key;
}

export async function runPublish(
  publisher: Publisher,
  route: CompiledRoute,
  facts: RequestFacts,
  received: ReceivedBody,
): Promise<ResponseSpec> {
  if (route.config.mode !== 'publish') throw new TypeError(`runPublish called for a ${route.config.mode} route`);
  const routingKey = routingKeyFor(route, received);
  const options = buildPublishOptions(facts, received.summary.root);
  await publisher.publish(route.config.exchange, routingKey, received.body, options, route.name);
  return {
    status: route.success.status,
    headers: [...route.success.headers, ['X-Request-Id', facts.requestId], ['Message-Id', facts.messageId]],
    body: route.success.body,
  };
}
