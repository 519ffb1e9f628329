/**
 * The parts of an amqplib confirm channel that the publisher writes frames to directly: the
 * connection's socket, the channel's number and the negotiated frame size. amqplib has no public
 * API for pre-encoded frames, so these are read from its objects (stable across amqplib 0.10-2.x)
 * and checked: if a future amqplib moves them, the bridge refuses the channel with an error that
 * says so instead of writing garbage (package.json pins amqplib 2.3.x).
 */
import { Socket } from 'node:net';
import type { ConfirmChannel } from 'amqplib';

export interface Wire {
  readonly socket: Socket;
  readonly channelNumber: number;
  readonly frameMax: number;
}

/** Thrown when amqplib no longer keeps its socket, channel number or frame size where expected. */
class UnsupportedAmqplibError extends Error {
  constructor(what: string) {
    super(`amqplib internals changed (${what}): this bridge needs amqplib 2.3.x`);
    this.name = 'UnsupportedAmqplibError';
  }
}

export function wireOf(channel: ConfirmChannel): Wire {
  // amqplib's typings hide these fields; each is checked before use.
  const inner = channel as unknown as {
    ch?: unknown;
    connection?: { stream?: unknown; frameMax?: unknown };
  };
  const channelNumber = inner.ch;
  const socket = inner.connection?.stream;
  const frameMax = inner.connection?.frameMax;
  if (typeof channelNumber !== 'number' || channelNumber < 1)
    throw new UnsupportedAmqplibError('channel.ch');
  if (!(socket instanceof Socket)) throw new UnsupportedAmqplibError('connection.stream');
  if (typeof frameMax !== 'number' || frameMax < 4096)
    throw new UnsupportedAmqplibError('connection.frameMax');
  return { socket, channelNumber, frameMax };
}
