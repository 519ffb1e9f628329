/**
 * Pure: the AMQP 0-9-1 frames of one basic.publish (method, content header, body frames) written
 * in one pass into one buffer. What is the same for every message of a route (exchange, flags,
 * app_id, delivery mode, constant headers such as x-http-path or Celery's null fields) is encoded
 * once when the route is compiled; a message adds only what varies. amqplib's generic encoder
 * built and validated every property and the whole header table for each message (about a fifth
 * of the worker's CPU per request, measured with bench/profile). test/unit/frames.test.ts holds
 * the output byte for byte against amqplib's own encoder.
 */
import { encodeEntries, encodeFieldName, type FieldValue } from './field-table.js';

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_END = 0xce;
/** Type, channel, size before the payload; the frame-end octet after it. */
const FRAME_OVERHEAD = 8;
/** Class 60 (basic), method 40 (publish). */
const BASIC_PUBLISH = 0x003c0028;
/** Class 60, weight 0. */
const BASIC_HEADER = 0x003c0000;

// Basic property flags, in the order the properties follow each other (AMQP 0-9-1, 4.2.6.1).
const P_CONTENT_TYPE = 0x8000;
const P_CONTENT_ENCODING = 0x4000;
const P_HEADERS = 0x2000;
const P_DELIVERY_MODE = 0x1000;
const P_CORRELATION_ID = 0x0400;
const P_REPLY_TO = 0x0200;
const P_EXPIRATION = 0x0100;
const P_MESSAGE_ID = 0x0080;
const P_TIMESTAMP = 0x0040;
const P_APP_ID = 0x0008;

export interface PublishTemplateSpec {
  readonly exchange: string;
  readonly mandatory: boolean;
  /** Delivery mode 2 (persistent) or 1 (transient). */
  readonly persistent: boolean;
  readonly appId: string;
  readonly contentEncoding?: string | undefined;
  readonly replyTo?: string | undefined;
  /** Per-message TTL in ms, as AMQP's decimal string. */
  readonly expiration?: string | undefined;
  /** Whether every message carries a correlation_id. */
  readonly correlationId: boolean;
  /** Headers with the same value in every message. */
  readonly constantHeaders: { readonly [name: string]: FieldValue };
  /** String headers given per message, in this order (an undefined value leaves one out). */
  readonly headerNames: readonly string[];
}

/** What varies per message. */
export interface PublishFields {
  readonly routingKey: string;
  readonly contentType: string;
  readonly messageId: string;
  /** Required when the template has `correlationId`, ignored otherwise. */
  readonly correlationId: string;
  readonly timestampSeconds: number;
  /** Values for the template's `headerNames`, by position. */
  readonly headerValues: ReadonlyArray<string | undefined>;
  readonly body: Buffer;
}

function shortstr(value: string, what: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > 255) throw new RangeError(`${what} "${value}" is longer than 255 bytes`);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** A compiled route's message shape: encodes each message of the route into its frames. */
export class PublishTemplate {
  readonly exchange: string;
  readonly #exchange: Buffer;
  readonly #bits: number;
  readonly #flags: number;
  readonly #contentEncoding: Buffer | undefined;
  readonly #constantEntries: Buffer;
  /** `[name length][name]S` per per-message header. */
  readonly #headerPrefixes: readonly Buffer[];
  readonly #deliveryMode: number;
  readonly #correlationId: boolean;
  readonly #replyTo: Buffer | undefined;
  readonly #expiration: Buffer | undefined;
  readonly #appId: Buffer;
  /** Bytes of everything constant, for the size bound. */
  readonly #constantBytes: number;

  constructor(spec: PublishTemplateSpec) {
    this.exchange = spec.exchange;
    this.#exchange = shortstr(spec.exchange, 'exchange');
    this.#bits = spec.mandatory ? 1 : 0;
    this.#contentEncoding =
      spec.contentEncoding === undefined
        ? undefined
        : shortstr(spec.contentEncoding, 'content encoding');
    this.#constantEntries = encodeEntries(spec.constantHeaders);
    this.#headerPrefixes = spec.headerNames.map((name) =>
      Buffer.concat([encodeFieldName(name), Buffer.from('S', 'latin1')]),
    );
    this.#deliveryMode = spec.persistent ? 2 : 1;
    this.#correlationId = spec.correlationId;
    this.#replyTo = spec.replyTo === undefined ? undefined : shortstr(spec.replyTo, 'reply_to');
    this.#expiration =
      spec.expiration === undefined ? undefined : shortstr(spec.expiration, 'expiration');
    this.#appId = shortstr(spec.appId, 'app_id');
    let flags =
      P_CONTENT_TYPE | P_HEADERS | P_DELIVERY_MODE | P_MESSAGE_ID | P_TIMESTAMP | P_APP_ID;
    if (this.#contentEncoding !== undefined) flags |= P_CONTENT_ENCODING;
    if (this.#correlationId) flags |= P_CORRELATION_ID;
    if (this.#replyTo !== undefined) flags |= P_REPLY_TO;
    if (this.#expiration !== undefined) flags |= P_EXPIRATION;
    this.#flags = flags;
    this.#constantBytes =
      this.#exchange.length +
      (this.#contentEncoding?.length ?? 0) +
      this.#constantEntries.length +
      this.#headerPrefixes.reduce((n, p) => n + p.length + 4, 0) +
      (this.#replyTo?.length ?? 0) +
      (this.#expiration?.length ?? 0) +
      this.#appId.length;
  }

  /**
   * The frames of one message on `channel`, body split to fit `frameMax`. Throws RangeError when
   * a short string (routing key, content type, message or correlation id) passes 255 bytes.
   */
  encode(channel: number, frameMax: number, m: PublishFields): Buffer {
    const body = m.body;
    const maxPayload = frameMax - FRAME_OVERHEAD;
    const bodyFrames = body.length === 0 ? 0 : Math.ceil(body.length / maxPayload);
    let bound =
      this.#constantBytes +
      64 +
      3 *
        (m.routingKey.length + m.contentType.length + m.messageId.length + m.correlationId.length);
    for (const value of m.headerValues) if (value !== undefined) bound += 3 * value.length;
    bound += bodyFrames * FRAME_OVERHEAD + body.length;
    const buf = Buffer.allocUnsafe(bound);

    // basic.publish method frame
    buf[0] = FRAME_METHOD;
    buf.writeUInt16BE(channel, 1);
    buf.writeUInt32BE(BASIC_PUBLISH, 7);
    buf.writeUInt16BE(0, 11);
    let o = 13 + this.#exchange.copy(buf, 13);
    o = writeShortstr(buf, o, m.routingKey, 'routing key');
    buf[o++] = this.#bits;
    buf[o] = FRAME_END;
    buf.writeUInt32BE(o - 7, 3);
    o += 1;

    // content header frame
    const h = o;
    buf[h] = FRAME_HEADER;
    buf.writeUInt16BE(channel, h + 1);
    buf.writeUInt32BE(BASIC_HEADER, h + 7);
    buf.writeUInt32BE(Math.floor(body.length / 0x100000000), h + 11);
    buf.writeUInt32BE(body.length >>> 0, h + 15);
    buf.writeUInt16BE(this.#flags, h + 19);
    o = writeShortstr(buf, h + 21, m.contentType, 'content type');
    if (this.#contentEncoding !== undefined) o += this.#contentEncoding.copy(buf, o);
    const table = o;
    o += 4;
    o += this.#constantEntries.copy(buf, o);
    const prefixes = this.#headerPrefixes;
    for (let i = 0; i < prefixes.length; i++) {
      const value = m.headerValues[i];
      if (value === undefined) continue;
      o += (prefixes[i] as Buffer).copy(buf, o); // i < prefixes.length
      const n = buf.write(value, o + 4, 'utf8');
      buf.writeUInt32BE(n, o);
      o += 4 + n;
    }
    buf.writeUInt32BE(o - table - 4, table);
    buf[o++] = this.#deliveryMode;
    if (this.#correlationId) o = writeShortstr(buf, o, m.correlationId, 'correlation id');
    if (this.#replyTo !== undefined) o += this.#replyTo.copy(buf, o);
    if (this.#expiration !== undefined) o += this.#expiration.copy(buf, o);
    o = writeShortstr(buf, o, m.messageId, 'message id');
    buf.writeUInt32BE(Math.floor(m.timestampSeconds / 0x100000000), o);
    buf.writeUInt32BE(m.timestampSeconds >>> 0, o + 4);
    o += 8;
    o += this.#appId.copy(buf, o);
    buf[o] = FRAME_END;
    buf.writeUInt32BE(o - h - 7, h + 3);
    o += 1;

    // body frames
    for (let start = 0; start < body.length; start += maxPayload) {
      const end = Math.min(body.length, start + maxPayload);
      buf[o] = FRAME_BODY;
      buf.writeUInt16BE(channel, o + 1);
      buf.writeUInt32BE(end - start, o + 3);
      o += 7 + body.copy(buf, o + 7, start, end);
      buf[o++] = FRAME_END;
    }
    return buf.subarray(0, o);
  }
}

function writeShortstr(buf: Buffer, at: number, value: string, what: string): number {
  const n = buf.write(value, at + 1, 'utf8');
  if (n > 255) throw new RangeError(`${what} is longer than 255 bytes`);
  buf[at] = n;
  return at + 1 + n;
}
