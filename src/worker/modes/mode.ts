/** What every mode is given: the request as the HTTP layer read it, and the AMQP parts it publishes through. */
import type { Publisher } from '../amqp/publisher.js';
import type { ReplyRouter } from '../amqp/replies.js';
import type { ClientLink, ReceivedBody, RequestFacts, RequestRecord } from '../request.js';
import type { CompiledRoute } from '../routes.js';

export interface ModeRequest<R extends CompiledRoute = CompiledRoute> {
  readonly route: R;
  readonly facts: RequestFacts;
  readonly body: ReceivedBody;
  readonly client: ClientLink;
  /** The request's record: the publisher and reply waits note their outcomes in it. */
  readonly record: RequestRecord;
}

export interface ModeDeps {
  readonly publisher: Publisher;
  readonly replies: ReplyRouter;
}
