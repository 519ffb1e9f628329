/**
 * Streaming well-formedness check of a request body: saxes underneath, fed the text that
 * body-decoder.ts makes of the bytes, with the bridge's own rules on top (depth, DOCTYPE,
 * namespace well-formedness, the declared encoding agreeing with the bytes) and the root name
 * and routing-key values (paths.ts) pulled out on the way.
 */
import { SaxesParser, type SaxesTagPlain, type XMLDecl } from 'saxes';
import { XmlError } from '../../shared/errors.js';
import { BodyDecoder } from './body-decoder.js';
import { checkDeclaredEncoding } from './encoding.js';
import { doctypeProblem } from './doctype.js';
import { NamespaceScope, piTargetProblem } from './namespaces.js';
import { PathMatcher, type CompiledPaths } from './paths.js';

export interface XmlCheckOptions {
  /** Deepest element nesting accepted; the root element is depth 1. */
  readonly maxDepth: number;
  /** Accept a DOCTYPE without internal subset (never fetched, never interpreted). */
  readonly allowDoctype: boolean;
  /** The element paths whose first value is wanted (compiled once per route). */
  readonly paths?: CompiledPaths | undefined;
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
// ~6 µs/doc either way), and "line 3, column 14" is what a partner needs to fix its sender.
// xmlns stays off: namespaces.ts checks the same rules for a fraction of what saxes' namespace
// mode costs (bench/xml-check-cost.ts).
type ParserOptions = { xmlns: false; position: true };
const PARSER_OPTIONS: ParserOptions = { xmlns: false, position: true };
const NO_VALUES: ReadonlyMap<string, string> = new Map();

/**
 * Checks one document. Feed raw body chunks as they arrive (the last one with `last`), then
 * call end(). Both throw XmlError only; after the first failure every later call throws that
 * same error.
 */
export class XmlChecker {
  private readonly maxDepth: number;
  private readonly allowDoctype: boolean;
  private readonly parser: SaxesParser<ParserOptions>;
  private readonly decoder: BodyDecoder;
  private readonly matcher: PathMatcher | undefined;
  private readonly namespaces = new NamespaceScope();
  private readonly contentTypeCharset: string | undefined;

  private sawBytes = false;
  /** Whether anything but XML whitespace was decoded; distinguishes 'empty' from 'malformed'. */
  private sawContent = false;
  private depth = 0;
  private root: string | undefined;
  /** Whether the declared encoding was compared with the decoded one (once, before the root). */
  private encodingChecked = false;
  private failure: XmlError | undefined;
  private summary: XmlSummary | undefined;

  constructor(options: XmlCheckOptions) {
    this.maxDepth = options.maxDepth;
    this.allowDoctype = options.allowDoctype;
    this.contentTypeCharset = options.contentTypeCharset;
    this.decoder = new BodyDecoder(options.contentTypeCharset);
    this.matcher = options.paths === undefined ? undefined : new PathMatcher(options.paths);

    const parser = new SaxesParser<ParserOptions>(PARSER_OPTIONS);
    parser.on('error', (err) => {
      throw this.fail(malformed(err.message, err));
    });
    parser.on('xmldecl', (decl) => this.onXmlDecl(decl));
    parser.on('doctype', (doctype) => this.onDoctype(doctype));
    parser.on('processinginstruction', ({ target }) => {
      const problem = piTargetProblem(target);
      if (problem !== undefined)
        throw this.fail(this.positioned(`${problem} (Namespaces in XML 1.0)`));
    });
    parser.on('attribute', ({ name, value }) => this.namespaces.attribute(name, value));
    parser.on('opentag', (tag) => this.onOpenTag(tag));
    parser.on('closetag', () => this.onCloseTag());
    // CDATA only arrives through its own event; saxes builds its string either way, so this
    // handler stays on. The text handler is switched on only while a capture is open.
    if (this.matcher !== undefined && options.paths?.wantsText === true)
      parser.on('cdata', this.matcher.text);
    this.parser = parser;
  }

  feed(chunk: Uint8Array, last = false): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.summary !== undefined)
      throw this.fail(new XmlError('malformed', 'data after the end of the document'));
    if (chunk.length > 0) this.sawBytes = true;
    else if (!last) return;
    let text: string;
    try {
      text = this.decoder.decode(chunk, last);
    } catch (err) {
      throw this.fail(
        err instanceof XmlError ? err : new XmlError('encoding', messageOf(err), { cause: err }),
      );
    }
    if (text.length > 0) this.parse(text);
  }

  end(): XmlSummary {
    if (this.failure !== undefined) throw this.failure;
    if (this.summary !== undefined) return this.summary;
    if (!this.sawBytes) throw this.fail(emptyBody());
    let tail: string;
    try {
      tail = this.decoder.end();
    } catch (err) {
      throw this.fail(
        err instanceof XmlError ? err : new XmlError('encoding', messageOf(err), { cause: err }),
      );
    }
    if (tail.length > 0) this.parse(tail);
    if (!this.sawContent) throw this.fail(emptyBody());
    try {
      this.parser.close();
    } catch (err) {
      throw this.failure ?? this.fail(malformed(messageOf(err), err));
    }
    if (this.root === undefined)
      throw this.fail(new XmlError('malformed', 'document must contain a root element'));
    this.summary = {
      root: this.root,
      values: this.matcher?.values ?? NO_VALUES,
      encoding: this.decoder.label,
    };
    return this.summary;
  }

  private fail(err: XmlError): XmlError {
    this.failure ??= err;
    return this.failure;
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

  private onXmlDecl(decl: XMLDecl): void {
    this.namespaces.setVersion(decl.version);
    this.checkEncoding(decl.encoding);
  }

  private checkEncoding(declared: string | undefined): void {
    this.encodingChecked = true;
    const decided = this.decoder.encoding;
    // Text reaches saxes only once the encoding is decided.
    if (decided === undefined) return;
    try {
      checkDeclaredEncoding(decided, declared, this.contentTypeCharset);
    } catch (err) {
      throw this.fail(
        err instanceof XmlError ? err : new XmlError('encoding', messageOf(err), { cause: err }),
      );
    }
  }

  /** A problem found by the bridge's own rules, at the parser's position, worded like saxes'. */
  private positioned(problem: string): XmlError {
    const { line, column } = this.parser;
    return new XmlError('malformed', `malformed XML at line ${line}, column ${column}: ${problem}`);
  }

  private onDoctype(doctype: string): void {
    if (!this.allowDoctype) {
      throw this.fail(
        new XmlError(
          'doctype',
          'DOCTYPE is not allowed on this route: send the document without <!DOCTYPE …>',
        ),
      );
    }
    if (hasInternalSubset(doctype)) {
      throw this.fail(
        new XmlError(
          'doctype',
          'internal DTD subset is never allowed (<!DOCTYPE … [ … ]>): entity and attribute declarations are not processed',
        ),
      );
    }
    const problem = doctypeProblem(doctype);
    if (problem !== undefined) throw this.fail(this.positioned(problem));
  }

  private onOpenTag(tag: SaxesTagPlain): void {
    if (!this.encodingChecked) this.checkEncoding(undefined);
    const depth = ++this.depth;
    if (depth > this.maxDepth) {
      throw this.fail(
        new XmlError(
          'too-deep',
          `elements are nested deeper than the maximum of ${this.maxDepth} levels`,
        ),
      );
    }
    const problem = this.namespaces.openTag(tag.name, depth);
    if (problem !== undefined)
      throw this.fail(this.positioned(`${problem} (Namespaces in XML 1.0)`));
    if (depth === 1) this.root = tag.name;
    // saxes slices out every text run only while a text handler is set (a third of the parse
    // time on CDATA-heavy WeChat bodies, measured) and reads the handler afresh at each run,
    // so it is set from a capture's start tag to its end tag only.
    if (this.matcher?.openTag(tag, depth) === true) this.parser.on('text', this.matcher.text);
  }

  private onCloseTag(): void {
    const depth = this.depth--;
    this.namespaces.closeTag(depth);
    if (this.matcher?.closeTag(depth) === true) this.parser.off('text');
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
  let detail = SAXES_POSITION.test(message)
    ? message.replace(SAXES_POSITION, ' at line $1, column $2: ')
    : `: ${message}`;
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
