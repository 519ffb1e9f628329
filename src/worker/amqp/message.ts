/** Pure: the AMQP properties and headers of the message for one HTTP request (CONTRACT.md). */
import type { Options } from 'amqplib';

/** What the HTTP layer read from the request, before the body. */
export interface RequestFacts {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly remoteAddr: string;
  readonly requestId: string;
  readonly messageId: string;
  readonly contentType: string | undefined;
  /** Values of the route's forwardHeaders that the request carried, names lower-cased. */
  readonly forwarded: ReadonlyArray<readonly [string, string]>;
  /** Every request header (lower-cased names), collected for celery routes only. */
  readonly allHeaders: Readonly<Record<string, string>> | undefined;
}

export const APP_ID = 'xml-amqp-bridge';
export const DEFAULT_CONTENT_TYPE = 'application/xml';

export function buildPublishOptions(facts: RequestFacts, xmlRoot: string): Options.Publish {
  const headers: Record<string, string> = {
    'x-http-method': facts.method,
    'x-http-path': facts.path,
    'x-http-query': facts.query,
    'x-remote-addr': facts.remoteAddr,
    'x-request-id': facts.requestId,
    'x-xml-root': xmlRoot,
  };
  for (const [name, value] of facts.forwarded) headers[name] = value;
  return {
    // Both are amqplib's defaults' opposites on purpose: non-persistent messages vanished on a
    // broker crash (PITFALLS #1) and only mandatory makes unroutable publishes visible (#2).
    persistent: true,
    mandatory: true,
    contentType: facts.contentType ?? DEFAULT_CONTENT_TYPE,
    messageId: facts.messageId,
    timestamp: Math.floor(Date.now() / 1000),
    appId: APP_ID,
    headers,
  };
}
