/**
 * The request/reply core shared by `rpc` and `celery` with `wait`: wait for the reply before
 * publishing (a fast backend can answer before our confirm arrives), answer with the reply
 * without waiting for the confirm (the reply proves delivery), fail at once when the publish
 * fails (nack, return, channel loss), stop waiting when the client leaves.
 */
import type { PublishFields, PublishTemplate } from '../amqp/frames.js';
import type { ReplyInterpreter } from '../amqp/replies.js';
import { BridgeError, ClientGoneError } from '../../shared/errors.js';
import type { ModeDeps, ModeRequest } from './mode.js';

const ignore = (): void => undefined;

export interface ReplyRequest<T> {
  readonly correlationId: string;
  readonly timeoutMs: number;
  readonly interpret: ReplyInterpreter<T>;
  readonly template: PublishTemplate;
  readonly fields: PublishFields;
}

/** Resolves with the interpreted reply; the route's reply counts as ok or timeout in the record. */
export async function requestReply<T>(
  req: ModeRequest,
  deps: ModeDeps,
  r: ReplyRequest<T>,
): Promise<T> {
  const { record, client } = req;
  if (client.gone) throw new ClientGoneError();
  const wait = deps.replies.wait(r.correlationId, r.timeoutMs, r.interpret, req.route.name);
  client.onGone(() => wait.cancel(new ClientGoneError()));
  deps.publisher.send(r.template, r.fields, req.facts.requestId, record, ignore, (err) =>
    wait.cancel(err),
  );
  try {
    const value = await wait.promise;
    record.reply = 'ok';
    return value;
  } catch (err) {
    if (err instanceof BridgeError && err.code === 'BRIDGE_REPLY_TIMEOUT') record.reply = 'timeout';
    throw err;
  }
}
