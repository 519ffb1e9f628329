/**
 * amqplib's own frame parser and encoder, as references for the bridge's frame encoder: what
 * amqplib reads from our bytes is what a consumer sees, and what amqplib writes for the same
 * message is what the bridge sent before it encoded frames itself. amqplib's package exports
 * hide these modules, so they are loaded by file path (tests only).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { PROJECT_ROOT } from './bridge.js';

const require = createRequire(import.meta.url);
const lib = path.join(PROJECT_ROOT, 'node_modules', 'amqplib', 'lib');

interface ParsedFrame {
  readonly type: number;
  readonly channel: number;
  readonly size: number;
  readonly payload: Buffer;
  readonly rest: Buffer;
}

// amqplib's internal modules have no typings: these describe the functions used here.
const frameModule = require(path.join(lib, 'frame.js')) as {
  parseFrame(bin: Buffer, max: number): ParsedFrame | false;
  decodeFrame(frame: ParsedFrame): {
    id?: number;
    channel: number;
    size?: number;
    fields?: Record<string, unknown>;
    content?: Buffer;
  };
  makeBodyFrame(channel: number, payload: Buffer): Buffer;
};
const defs = require(path.join(lib, 'defs.js')) as {
  BasicPublish: number;
  BasicProperties: number;
  encodeMethod(id: number, channel: number, fields: Record<string, unknown>): Buffer;
  encodeProperties(
    id: number,
    channel: number,
    size: number,
    fields: Record<string, unknown>,
  ): Buffer;
};

export interface DecodedPublish {
  readonly channel: number;
  readonly method: Record<string, unknown>;
  readonly properties: Record<string, unknown> & { headers?: Record<string, unknown> };
  readonly bodySize: number;
  readonly body: Buffer;
  /** Frames in the buffer: method, header, body frames. */
  readonly frames: number;
}

/** Reads one basic.publish (method, header, body frames) the way amqplib's connection would. */
export function decodePublish(bytes: Buffer, frameMax = 131072): DecodedPublish {
  let rest = bytes;
  const frames: ParsedFrame[] = [];
  while (rest.length > 0) {
    const frame = frameModule.parseFrame(rest, frameMax);
    if (frame === false) throw new Error(`incomplete frame after ${frames.length} frames`);
    frames.push(frame);
    rest = frame.rest;
  }
  const [methodFrame, headerFrame, ...bodyFrames] = frames.map((f) => frameModule.decodeFrame(f));
  if (methodFrame?.id !== defs.BasicPublish) throw new Error('first frame is not basic.publish');
  if (headerFrame?.fields === undefined) throw new Error('second frame is not a content header');
  return {
    channel: methodFrame.channel,
    method: methodFrame.fields ?? {},
    properties: headerFrame.fields,
    bodySize: headerFrame.size ?? -1,
    body: Buffer.concat(bodyFrames.map((f) => f.content ?? Buffer.alloc(0))),
    frames: frames.length,
  };
}

/** The bytes amqplib 2.3 writes for basic.publish with these fields and properties. */
export function amqplibPublishFrames(
  channel: number,
  frameMax: number,
  method: Record<string, unknown>,
  properties: Record<string, unknown>,
  body: Buffer,
): Buffer {
  const parts = [
    defs.encodeMethod(defs.BasicPublish, channel, method),
    defs.encodeProperties(defs.BasicProperties, channel, body.length, properties),
  ];
  const maxBody = frameMax - 8;
  for (let offset = 0; offset < body.length; offset += maxBody) {
    parts.push(
      frameModule.makeBodyFrame(
        channel,
        body.subarray(offset, Math.min(body.length, offset + maxBody)),
      ),
    );
  }
  return Buffer.concat(parts);
}
