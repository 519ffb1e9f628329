/**
 * Bytes → text for the XML check, chunk by chunk: holds the first bytes back until the encoding
 * is decided (encoding.ts: BOM, declaration, Content-Type charset, UTF-8), then decodes strictly,
 * carrying characters split across chunks. A body that arrives in one chunk (most do) is decoded
 * in one call by a shared decoder, with no per-request decoder or copy.
 */
import type { TextDecoder } from 'node:util';
import { XmlError } from '../../shared/errors.js';
import {
  DECLARATION_SNIFF_LIMIT,
  createDecoder,
  describeEncoding,
  sniffEncoding,
  type SniffedEncoding,
} from './encoding.js';

const STREAM: { readonly stream: boolean } = { stream: true };

/**
 * One fatal decoder per encoding label for whole bodies: each use decodes and flushes in one
 * synchronous call, so it carries no state from one body to the next. A decoder that threw is
 * replaced (a failed streaming decode may leave bytes behind).
 */
const wholeBodyDecoders = new Map<string, TextDecoder>();

function wholeBodyDecoder(encoding: SniffedEncoding): TextDecoder {
  let decoder = wholeBodyDecoders.get(encoding.label);
  if (decoder === undefined) {
    decoder = createDecoder(encoding);
    // Bounded by the labels canonicalLabel resolves (a few dozen WHATWG encodings).
    wholeBodyDecoders.set(encoding.label, decoder);
  }
  return decoder;
}

export class BodyDecoder {
  readonly #contentTypeCharset: string | undefined;
  #encoding: SniffedEncoding | undefined;
  /** Set once a body spans chunks: its own streaming decoder. */
  #stream: TextDecoder | undefined;
  /** Bytes held back while the encoding is undecided (a copy: callers reuse chunk memory). */
  #head: Uint8Array | undefined;
  #headLength = 0;
  #done = false;

  constructor(contentTypeCharset: string | undefined) {
    this.#contentTypeCharset = contentTypeCharset;
  }

  /** How the body's encoding was decided; undefined until its first bytes decided it. */
  get encoding(): SniffedEncoding | undefined {
    return this.#encoding;
  }

  /** The WHATWG label the body is decoded with ('utf-8' until decided). */
  get label(): string {
    return this.#encoding?.label ?? 'utf-8';
  }

  /**
   * The text of `chunk` (possibly '' while bytes are held back). `last` = no chunk follows: then
   * everything is decoded and a character cut at the end is an error. Throws XmlError('encoding').
   */
  decode(chunk: Uint8Array, last: boolean): string {
    if (this.#done) throw new XmlError('malformed', 'data after the end of the body');
    if (last) this.#done = true;
    if (this.#encoding !== undefined) return this.#continue(chunk, last);
    if (this.#headLength === 0) {
      // Usual case: the first chunk decides, nothing is copied.
      const sniffed = this.#sniff(chunk, last);
      if (sniffed !== 'need-more') {
        this.#encoding = sniffed;
        return last ? this.#whole(chunk) : this.#continue(chunk, false);
      }
    }
    const taken = this.#hold(chunk);
    const held = (this.#head as Uint8Array).subarray(0, this.#headLength); // #hold created it
    const sniffed = this.#sniff(held, last);
    if (sniffed === 'need-more') return '';
    this.#encoding = sniffed;
    this.#head = undefined;
    this.#headLength = 0;
    const rest = chunk.subarray(taken);
    if (last && rest.length === 0) return this.#whole(held);
    return this.#continue(held, false) + this.#continue(rest, last);
  }

  /** Decodes what is still held when the body ended without a chunk marked last. */
  end(): string {
    return this.#done ? '' : this.decode(new Uint8Array(0), true);
  }

  #continue(bytes: Uint8Array, last: boolean): string {
    this.#stream ??= this.#newStream(this.#encoding as SniffedEncoding); // decided before any continue
    return this.#streamed(bytes, last);
  }

  /**
   * Decodes a whole body. Always through the streaming call and a flush: Node 20's one-shot
   * decode of windows-1252 takes a Latin-1 shortcut that turns 0x80-0x9F (€, ‘, ’ …) into C1
   * controls, and the flush tells a character cut at the end from a bad byte.
   */
  #whole(bytes: Uint8Array): string {
    const encoding = this.#encoding as SniffedEncoding; // decided by the caller
    const decoder = wholeBodyDecoder(encoding);
    let atEnd = false;
    try {
      const text = decoder.decode(bytes, STREAM);
      atEnd = true;
      return text + decoder.decode();
    } catch (err) {
      wholeBodyDecoders.delete(encoding.label);
      throw this.#encodingError(err, atEnd);
    }
  }

  #newStream(encoding: SniffedEncoding): TextDecoder {
    try {
      return createDecoder(encoding);
    } catch (err) {
      // canonicalLabel already vetted the label; this only guards an ICU-less Node build.
      throw new XmlError(
        'encoding',
        `cannot decode ${describeEncoding(encoding)}: ${messageOf(err)}`,
        { cause: err },
      );
    }
  }

  #streamed(bytes: Uint8Array, last: boolean): string {
    const stream = this.#stream as TextDecoder; // created by #continue
    try {
      const text = stream.decode(bytes, STREAM);
      return last ? text + stream.decode() : text;
    } catch (err) {
      throw this.#encodingError(err, last);
    }
  }

  #sniff(head: Uint8Array, complete: boolean): SniffedEncoding | 'need-more' {
    try {
      return sniffEncoding(head, this.#contentTypeCharset, complete);
    } catch (err) {
      throw err instanceof XmlError
        ? err
        : new XmlError('encoding', messageOf(err), { cause: err });
    }
  }

  /** Copies as much of `chunk` as the sniff window still takes; returns how many bytes that was. */
  #hold(chunk: Uint8Array): number {
    this.#head ??= new Uint8Array(DECLARATION_SNIFF_LIMIT);
    const taken = Math.min(chunk.length, DECLARATION_SNIFF_LIMIT - this.#headLength);
    this.#head.set(chunk.subarray(0, taken), this.#headLength);
    this.#headLength += taken;
    return taken;
  }

  #encodingError(err: unknown, atEnd: boolean): XmlError {
    const what =
      this.#encoding === undefined ? 'the declared encoding' : describeEncoding(this.#encoding);
    const detail = atEnd ? 'the body ends in the middle of a character' : 'invalid byte sequence';
    return new XmlError('encoding', `body is not valid ${what}: ${detail}`, { cause: err });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
