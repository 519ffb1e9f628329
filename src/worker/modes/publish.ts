/** `publish` mode: one persistent mandatory message, answered only after the broker's confirm. */
import { checkRoutingKey, messageFields } from '../amqp/message.js';
import type { ModeResult } from '../request.js';
import type { CompiledPublishRoute } from '../routes.js';
import type { ModeDeps, ModeRequest } from './mode.js';

const ACCEPTED: ModeResult = { kind: 'accepted' };

export async function runPublish(
  req: ModeRequest<CompiledPublishRoute>,
  deps: ModeDeps,
): Promise<ModeResult> {
  const { route, facts, body } = req;
  const routingKey = checkRoutingKey(route.routingKey.render(body.summary.values));
  await deps.publisher.publish(
    route.template,
    messageFields(facts, body, routingKey),
    facts.requestId,
    req.record,
  );
  return ACCEPTED;
}
