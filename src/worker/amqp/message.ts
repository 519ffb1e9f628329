/**
 * The AMQP message of publish and rpc routes (CONTRACT: "The AMQP message"): the route's
 * template, built once at config load, and the per-request fields filled into it.
 */
import { XmlError } from '../../shared/errors.js';
import type { PublishRouteConfig, RpcRouteConfig } from '../../shared/config-schema.js';
import type { ReceivedBody, RequestFacts } from '../request.js';
import { PublishTemplate, type PublishFields } from './frames.js';
import { DIRECT_REPLY_TO } from './replies.js';

export const APP_ID = 'xml-amqp-bridge';
export const DEFAULT_CONTENT_TYPE = 'application/xml';

/** Headers every message of a route carries with a per-request value, in template order. */
const PER_REQUEST_HEADERS = [
  'x-http-query',
  'x-remote-addr',
  'x-request-id',
  'x-xml-root',
] as const;

/**
 * The template of a publish or rpc route. Persistent unless the route says otherwise, always
 * `mandatory`: non-persistent messages vanished on a broker crash (docs/failure-modes.md #1) and
 * only mandatory makes unroutable publishes visible (#2). rpc requests carry `reply_to` and, as
 * `expiration`, the route's timeout: the broker drops a request whose caller has given up.
 */
export function routeTemplate(route: PublishRouteConfig | RpcRouteConfig): PublishTemplate {
  const rpc = route.mode === 'rpc';
  return new PublishTemplate({
    exchange: route.exchange,
    mandatory: true,
    persistent: route.persistent,
    appId: APP_ID,
    correlationId: rpc,
    replyTo: rpc ? DIRECT_REPLY_TO : undefined,
    expiration: rpc ? String(route.timeoutMs) : undefined,
    // Only POST reaches a mode, and routes match their path exactly.
    constantHeaders: { 'x-http-method': 'POST', 'x-http-path': route.path },
    headerNames: [
      ...PER_REQUEST_HEADERS,
      ...route.forwardHeaders,
      ...(route.partners === undefined ? [] : ['x-partner']),
    ],
  });
}

/** The per-request part of a publish or rpc message. */
export function messageFields(
  facts: RequestFacts,
  received: ReceivedBody,
  routingKey: string,
  correlationId = '',
): PublishFields {
  return {
    routingKey,
    contentType: facts.contentType ?? DEFAULT_CONTENT_TYPE,
    messageId: facts.messageId,
    correlationId,
    timestampSeconds: Math.floor(Date.now() / 1000),
    headerValues:
      facts.partner === undefined
        ? [
            facts.query,
            facts.remoteAddr,
            facts.requestId,
            received.summary.root,
            ...facts.forwarded,
          ]
        : [
            facts.query,
            facts.remoteAddr,
            facts.requestId,
            received.summary.root,
            ...facts.forwarded,
            facts.partner,
          ],
    body: received.body,
  };
}

/** An AMQP short string (routing key) holds at most 255 bytes. */
export function checkRoutingKey(key: string): string {
  if (key.length > 85 && Buffer.byteLength(key) > 255) {
    throw new XmlError(
      'routing-key',
      'the routing key built from the body is longer than 255 bytes',
    );
  }
  return key;
}
