/** Streaming well-formedness check of a request body (bytes in, saxes underneath) that also pulls out the root name and the values routing keys need. */

import type { TextDecoder } from 'node:util';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import { XmlError } from '../../shared/errors.js';
import {
  DECLARATION_SNIFF_LIMIT,
  createDecoder,
  describeEncoding,
  sniffEncoding,
  type SniffedEncoding,
} from './encoding.js';

export interface XmlCheckOptions {
  /** Deepest element nesting accepted; the root element is depth 1. */
  readonly maxDepth: number;
  /** Accept a DOCTYPE without internal subset (never fetched, never interpreted). */
  readonly allowDoctype: boolean;
  /** Element paths like '/xml/MsgType' or '/a/b/@attr' whose first value is wanted. */
  readonly extract: readonly string[];
  readonly contentTypeCharset?: string | undefined;
}

export interface XmlSummary {
  /** The root element's qualified name as written. */
  readonly root: string;
  /** Text content of the first element (or attribute value) per requested path; unseen paths are absent. */
  readonly values: ReadonlyMap<string, string>;
  /** The WHATWG label the body was decoded with (e.g. 'utf-8', 'gb18030'). */
  readonly encoding: string;
}

// Position tracking stays on: on 1 KiB documents it cost nothing measurable (within noise of
// ~16-18 µs/doc either way), and "line 3, column 14" is what a partner needs to fix its sender.
type ParserOptions = { xmlns: false; position: true };
const PARSER_OPTIONS: ParserOptions = { xmlns: false, position: true };
const STREAM: { readonly stream: boolean } = { stream: true };

interface PathNode {
  readonly children: Map<string, PathNode>;
  /** Set when this element's text content is requested. */
  textPath: string | undefined;
  readonly attributes: Array<{ readonly name: string; readonly path: string }>;
}

interface Capture {
  readonly path: string;
  readonly depth: number;
  text: string;
}

interface CompiledPaths {
  readonly root: PathNode;
  /** False when only attributes are requested: then no text/cdata handler is registered. */
  readonly wantsText: boolean;
}

// Routes reuse one `extract` array for every request: compile its trie once.
const compiledPaths = new WeakMap<readonly string[], CompiledPaths>();

function compilePaths(paths: readonly string[]): CompiledPaths {
  const cached = compiledPaths.get(paths);
  if (cached !== undefined) return cached;
  const root = newNode();
  let wantsText = false;
  for (const path of paths) {
    const steps = path.split('/');
    if (steps[0] !== '' || steps.length < 2 || steps.some((s, i) => i > 0 && s === '')) {
      throw new TypeError(`extract path ${JSON.stringify(path)} must be absolute, like /xml/MsgType or /a/b/@attr`);
    }
    const last = steps[steps.length - 1] ?? '';
    const attribute = last.startsWith('@') ? last.slice(1) : undefined;
    const elementSteps = steps.slice(1, attribute === undefined ? steps.length : -1);
    if (elementSteps.length === 0 || attribute === '') {
      throw new TypeError(`extract path ${JSON.stringify(path)} must name at least one element`);
    }
    let node = root;
    for (const step of elementSteps) {
      let child = node.children.get(step);
      if (child === undefined) {
        child = newNode();
        node.children.set(step, child);
      }
      node = child;
    }
    if (attribute === undefined) {
      node.textPath = path;
      wantsText = true;
    } else if (!node.attributes.some((a) => a.name === attribute)) {
      node.attributes.push({ name: attribute, path });
    }
  }
  const compiled = { root, wantsText };
  compiledPaths.set(paths, compiled);
  return compiled;
}

function newNode(): PathNode {
  return { children: new Map(), textPath: undefined, attributes: [] };
}

/**
 * Checks one document. Feed raw body chunks as they arrive, then call end(). Both throw
 * XmlError only; after the first failure every later call throws that same error.
 */
export class XmlChecker {
  private readonly maxDepth: number;
  private readonly allowDoctype: boolean;
  private readonly contentTypeCharset: string | undefined;
  private readonly parser: SaxesParser<ParserOptions>;

  private decoder: TextDecoder | undefined;
  private encoding: SniffedEncoding | undefined;
  /** Bytes held back while the encoding is undecided (a copy: callers reuse chunk memory). */
  private head: Uint8Array | undefined;
  private headLength = 0;
  private sawBytes = false;
  /** Whether anything but XML whitespace was decoded; distinguishes 'empty' from 'malformed'. */
  private sawContent = false;

  private depth = 0;
  private root: string | undefined;
  /** Depth of the deepest element on the current path that is still on a requested path. */
  private matchDepth = 0;
  private readonly matchStack: PathNode[] = [];
  private readonly captures: Capture[] = [];
  private readonly values = new Map<string, string>();
  private readonly onText: ((text: string) => void) | undefined;

  private failure: XmlError | undefined;
  private summary: XmlSummary | undefined;

  constructor(options: XmlCheckOptions) {
    this.maxDepth = options.maxDepth;
    this.allowDoctype = options.allowDoctype;
    this.contentTypeCharset = options.contentTypeCharset;
    const paths = options.extract.length === 0 ? undefined : compilePaths(options.extract);
    if (paths !== undefined) this.matchStack.push(paths.root);

    const parser = new SaxesParser<ParserOptions>(PARSER_OPTIONS);
    parser.on('error', (err) => {
      throw this.fail(malformed(err.message, err));
    });
    parser.on('doctype', (doctype) => this.onDoctype(doctype));
    parser.on('opentag', (tag) => this.onOpenTag(tag));
    parser.on('closetag', () => this.onCloseTag());
    if (paths?.wantsText === true) {
      this.onText = (text: string): void => {
        for (const capture of this.captures) capture.text += text;
      };
      // CDATA only arrives through its own event; saxes builds its string either way, so this
      // handler stays on. The text handler is switched on only while a capture is open.
      parser.on('cdata', this.onText);
    }
    this.parser = parser;
  }

  feed(chunk: Uint8Array): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.summary !== undefined) throw this.fail(new XmlError('malformed', 'data after the end of the document'));
    if (chunk.length === 0) return;
    this.sawBytes = true;
    if (this.decoder !== undefined) {
      this.decodeAndParse(chunk);
      return;
    }
    if (this.headLength === 0) {
      // Usual case: the first chunk decides, nothing is copied.
      const sniffed = this.sniff(chunk, false);
      if (sniffed === 'need-more') {
        this.hold(chunk);
        return;
      }
      this.startDecoding(sniffed);
      this.decodeAndParse(chunk);
      return;
    }
    const taken = this.hold(chunk);
    const held = this.heldBytes();
    const sniffed = this.sniff(held, false);
    if (sniffed === 'need-more') return;
    this.startDecoding(sniffed);
    this.head = undefined;
    this.headLength = 0;
    this.decodeAndParse(held);
    if (taken < chunk.length) this.decodeAndParse(chunk.subarray(taken));
  }

  end(): XmlSummary {
    if (this.failure !== undefined) throw this.failure;
    if (this.summary !== undefined) return this.summary;
    if (!this.sawBytes) throw this.fail(emptyBody());
    if (this.decoder === undefined) {
      const held = this.heldBytes();
      const sniffed = this.sniff(held, true);
      // `complete` = true always decides.
      if (sniffed === 'need-more') throw this.fail(new XmlError('malformed', 'could not determine the encoding'));
      this.startDecoding(sniffed);
      this.head = undefined;
      this.headLength = 0;
      this.decodeAndParse(held);
    }
    let tail: string;
    try {
      tail = this.requireDecoder().decode();
    } catch (err) {
      throw this.fail(this.encodingError(err, true));
    }
    if (tail.length > 0) this.parse(tail);
    if (!this.sawContent) throw this.fail(emptyBody());
    try {
      this.parser.close();
    } catch (err) {
      throw this.failure ?? this.fail(malformed(messageOf(err), err));
    }
    if (this.root === undefined) throw this.fail(new XmlError('malformed', 'document must contain a root element'));
    this.summary = { root: this.root, values: this.values, encoding: this.encoding?.label ?? 'utf-8' };
    return this.summary;
  }

  private fail(err: XmlError): XmlError {
    this.failure ??= err;
    return this.failure;
  }

  private sniff(head: Uint8Array, complete: boolean): SniffedEncoding | 'need-more' {
    try {
      return sniffEncoding(head, this.contentTypeCharset, complete);
    } catch (err) {
      throw this.fail(err instanceof XmlError ? err : new XmlError('encoding', messageOf(err), { cause: err }));
    }
  }

  private startDecoding(encoding: SniffedEncoding): void {
    this.encoding = encoding;
    try {
      this.decoder = createDecoder(encoding);
    } catch (err) {
      // canonicalLabel already vetted the label; this only guards an ICU-less Node build.
      throw this.fail(new XmlError('encoding', `cannot decode ${describeEncoding(encoding)}: ${messageOf(err)}`, { cause: err }));
    }
  }

  private requireDecoder(): TextDecoder {
    if (this.decoder === undefined) throw this.fail(new XmlError('malformed', 'internal: no decoder'));
    return this.decoder;
  }

  /** Copies as much of `chunk` as the sniff window still takes; returns how many bytes that was. */
  private hold(chunk: Uint8Array): number {
    this.head ??= new Uint8Array(DECLARATION_SNIFF_LIMIT);
    const taken = Math.min(chunk.length, DECLARATION_SNIFF_LIMIT - this.headLength);
    this.head.set(chunk.subarray(0, taken), this.headLength);
    this.headLength += taken;
    return taken;
  }

  private heldBytes(): Uint8Array {
    return this.head === undefined ? new Uint8Array(0) : this.head.subarray(0, this.headLength);
  }

  private decodeAndParse(bytes: Uint8Array): void {
    let text: string;
    try {
      text = this.requireDecoder().decode(bytes, STREAM);
    } catch (err) {
      throw this.fail(this.encodingError(err, false));
    }
    if (text.length > 0) this.parse(text);
  }

  private parse(text: string): void {
    if (!this.sawContent) {
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
          this.sawContent = true;
          break;
        }
      }
    }
    try {
      this.parser.write(text);
    } catch (err) {
      // Our handlers record their XmlError before throwing; anything else came from saxes itself.
      throw this.failure ?? this.fail(malformed(messageOf(err), err));
    }
  }

  private encodingError(err: unknown, atEnd: boolean): XmlError {
    const what = this.encoding === undefined ? 'the declared encoding' : describeEncoding(this.encoding);
    const detail = atEnd ? 'the body ends in the middle of a character' : 'invalid byte sequence';
    return new XmlError('encoding', `body is not valid ${what}: ${detail}`, { cause: err });
  }

  private onDoctype(doctype: string): void {
    if (!this.allowDoctype) {
      throw this.fail(new XmlError('doctype', 'DOCTYPE is not allowed on this route: send the document without <!DOCTYPE …>'));
    }
    if (hasInternalSubset(doctype)) {
      throw this.fail(new XmlError('doctype', 'internal DTD subset is never allowed (<!DOCTYPE … [ … ]>): entity and attribute declarations are not processed'));
    }
  }

  private onOpenTag(tag: SaxesTagPlain): void {
    const depth = ++this.depth;
    if (depth > this.maxDepth) {
      throw this.fail(new XmlError('too-deep', `elements are nested deeper than the maximum of ${this.maxDepth} levels`));
    }
    if (depth === 1) this.root = tag.name;
    // Only descend the trie while every ancestor matched a requested path.
    if (depth !== this.matchDepth + 1) return;
    const parent = this.matchStack[this.matchDepth];
    const node = parent?.children.get(tag.name);
    if (node === undefined) return;
    this.matchDepth = depth;
    this.matchStack[depth] = node;
    if (node.textPath !== undefined && !this.values.has(node.textPath)) {
      // saxes slices out every text run only while a text handler is set (a third of the parse
      // time on CDATA-heavy WeChat bodies, measured) and reads the handler afresh at each run,
      // so it is set from the capture's start tag to its end tag only.
      if (this.captures.length === 0 && this.onText !== undefined) this.parser.on('text', this.onText);
      this.captures.push({ path: node.textPath, depth, text: '' });
    }
    for (const { name, path } of node.attributes) {
      if (this.values.has(path)) continue;
      const value = tag.attributes[name];
      if (value !== undefined) this.values.set(path, value);
    }
  }

  private onCloseTag(): void {
    const depth = this.depth--;
    if (depth !== this.matchDepth) return;
    this.matchDepth--;
    const capture = this.captures[this.captures.length - 1];
    if (capture !== undefined && capture.depth === depth) {
      this.captures.pop();
      this.values.set(capture.path, capture.text);
      if (this.captures.length === 0) this.parser.off('text');
    }
  }
}

/** A `[` outside quoted literals starts the internal subset (saxes keeps the raw text). */
function hasInternalSubset(doctype: string): boolean {
  let quote = 0;
  for (let i = 0; i < doctype.length; i++) {
    const c = doctype.charCodeAt(i);
    if (quote !== 0) {
      if (c === quote) quote = 0;
    } else if (c === 0x22 || c === 0x27) {
      quote = c;
    } else if (c === 0x5b) {
      return true;
    }
  }
  return false;
}

const SAXES_POSITION = /^(\d+):(\d+): /;

function malformed(message: string, cause: unknown): XmlError {
  // saxes prefixes "line:column: "; spell it out for partners reading a 400 body.
  let detail = SAXES_POSITION.test(message) ? message.replace(SAXES_POSITION, ' at line $1, column $2: ') : `: ${message}`;
  if (detail.endsWith('undefined entity.')) {
    detail = `${detail.slice(0, -1)}: only &lt; &gt; &amp; &apos; &quot; and character references are allowed (DTD entities are never expanded)`;
  }
  return new XmlError('malformed', `malformed XML${detail}`, { cause });
}

function emptyBody(): XmlError {
  return new XmlError('empty', 'empty body: an XML document is required');
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
