/**
 * Byte-level charset detection: decides which TextDecoder decodes a request body before saxes
 * (which only understands JS strings) sees a single character, and whether the document's XML
 * declaration agrees with that decision.
 *
 * Policy, in order (first rule that applies wins):
 *  1. Byte order mark: EF BB BF → utf-8, FE FF → utf-16be, FF FE → utf-16le. The BOM beats the
 *     Content-Type charset. The XML declaration must agree with it (checkDeclaredEncoding): a
 *     UTF-8 BOM with `encoding="ISO-8859-1"`, or a UTF-16 BOM with `encoding="UTF-8"`, is a
 *     fatal error (XML 1.0 §4.3.3), refused as 'encoding'.
 *  2. UTF-16 without BOM, recognised from `<?` in the first four bytes:
 *     3C 00 3F 00 → utf-16le, 00 3C 00 3F → utf-16be (XML 1.0 appendix F). A UTF-16 entity
 *     without a BOM must say which UTF-16 it is: its declaration names UTF-16LE or UTF-16BE
 *     (matching the byte order), or, without an encoding declaration, the Content-Type charset
 *     does (RFC 7303 §3). `encoding="UTF-16"` without a BOM is refused.
 *  3. The ASCII-compatible XML declaration's `encoding="…"` (single or double quotes). The
 *     declaration travels with the bytes, while header charsets are often a framework default,
 *     so it beats Content-Type. While the head starts with `<?xml` + whitespace and no `?>` has
 *     arrived, the answer is 'need-more' until 1024 bytes were seen; after that the declaration
 *     is treated as absent here (checkDeclaredEncoding still compares it once saxes read it). A
 *     UTF-16 label in an ASCII-compatible declaration is a fatal error: the declaration was
 *     readable as ASCII, so the document cannot be UTF-16 (XML 1.0 §4.3.3; W3C test rmt-e2e-61).
 *  4. The Content-Type `charset` parameter.
 *  5. utf-8.
 * Labels resolve through WHATWG (TextDecoder), so `iso-8859-1`/`us-ascii` decode as
 * windows-1252. Every gbk alias (gb2312, gbk, x-gbk, gb_2312-80, …) becomes gb18030: the WHATWG
 * gbk decoder rejects GB18030 four-byte sequences that real "GBK" senders emit, and maps some
 * two-byte codes (A2 E3 = €) to private-use characters. A label TextDecoder does not know
 * (RangeError) is XmlError('encoding') naming the label and where it came from.
 */

import { TextDecoder } from 'node:util';
import { XmlError } from '../../shared/errors.js';

/** Where the decision came from; used in error messages so partners can fix the right thing. */
export type EncodingSource = 'bom' | 'utf16-pattern' | 'declaration' | 'content-type' | 'default';

export interface SniffedEncoding {
  /** Canonical WHATWG encoding name, accepted by `new TextDecoder()`. */
  readonly label: string;
  readonly source: EncodingSource;
  /** The label as written in the declaration or Content-Type, when that decided. */
  readonly declared?: string;
}

/** How many bytes may pass without the XML declaration's `?>` before we stop waiting for it. */
export const DECLARATION_SNIFF_LIMIT = 1024;

interface Signature {
  readonly bytes: readonly number[];
  readonly result: SniffedEncoding;
}

// Checked in order; a head that is a proper prefix of any of them cannot be decided yet.
const SIGNATURES: readonly Signature[] = [
  { bytes: [0xef, 0xbb, 0xbf], result: { label: 'utf-8', source: 'bom' } },
  { bytes: [0xfe, 0xff], result: { label: 'utf-16be', source: 'bom' } },
  { bytes: [0xff, 0xfe], result: { label: 'utf-16le', source: 'bom' } },
  { bytes: [0x3c, 0x00, 0x3f, 0x00], result: { label: 'utf-16le', source: 'utf16-pattern' } },
  { bytes: [0x00, 0x3c, 0x00, 0x3f], result: { label: 'utf-16be', source: 'utf16-pattern' } },
];

/** `<?xml` */
const XML_DECL_OPEN: readonly number[] = [0x3c, 0x3f, 0x78, 0x6d, 0x6c];

const UTF8: SniffedEncoding = { label: 'utf-8', source: 'default' };

/**
 * Decide the encoding of a body from its first bytes. Returns 'need-more' when the bytes seen so
 * far cannot decide yet (a partial BOM or `<?xml` declaration); pass `complete` = true once the
 * body has ended, which always decides. Throws XmlError('encoding') for an unknown label.
 */
export function sniffEncoding(
  head: Uint8Array,
  contentTypeCharset: string | undefined,
  complete = false,
): SniffedEncoding | 'need-more' {
  const n = head.length;
  if (n === 0) {
    return complete ? fromContentType(contentTypeCharset) : 'need-more';
  }

  for (const { bytes, result } of SIGNATURES) {
    const m = prefixMatch(head, bytes);
    if (m === 'full') return result;
    if (m === 'partial' && !complete) return 'need-more';
  }

  const open = prefixMatch(head, XML_DECL_OPEN);
  if (open === 'partial') {
    if (!complete) return 'need-more';
  } else if (open === 'full') {
    const next = head[XML_DECL_OPEN.length];
    if (next === undefined) {
      if (!complete) return 'need-more';
    } else if (isXmlSpace(next)) {
      const end = findDeclarationEnd(head);
      if (end >= 0) {
        const declared = declaredEncoding(head, end);
        if (declared !== undefined) {
          const label = canonicalLabel(declared, 'the XML declaration');
          if (isUtf16(label)) {
            throw new XmlError(
              'encoding',
              `the XML declaration says "${declared}", but the body is in 8-bit bytes: a UTF-16 document starts with a byte order mark`,
            );
          }
          return { label, source: 'declaration', declared };
        }
      } else if (n < DECLARATION_SNIFF_LIMIT && !complete) {
        return 'need-more';
      }
    }
  }

  return fromContentType(contentTypeCharset);
}

/**
 * Resolve an encoding label to the canonical name the bridge decodes with (WHATWG name, gbk →
 * gb18030). `origin` names where the label came from, for the error message.
 */
export function canonicalLabel(label: string, origin: string): string {
  const key = label.trim().toLowerCase();
  const cached = canonicalCache.get(key);
  if (cached !== undefined) return cached;
  let resolved: string;
  try {
    resolved = new TextDecoder(key).encoding;
  } catch (err) {
    if (err instanceof RangeError) {
      throw new XmlError(
        'encoding',
        `unsupported encoding "${label}" in ${origin}: send UTF-8, or a charset listed in the WHATWG Encoding Standard`,
        { cause: err },
      );
    }
    throw err;
  }
  if (resolved === 'gbk') resolved = 'gb18030';
  // Bounded: labels come from partners, only well-known ones are worth remembering.
  if (canonicalCache.size < 64) canonicalCache.set(key, resolved);
  return resolved;
}

const canonicalCache = new Map<string, string>([
  ['utf-8', 'utf-8'],
  ['utf8', 'utf-8'],
]);

/**
 * Checks the XML declaration's encoding (as saxes read it; undefined when the document has no
 * declaration or no encoding in it) against the encoding the body was decoded with, per the policy
 * above. Throws XmlError('encoding') naming both.
 */
export function checkDeclaredEncoding(
  decided: SniffedEncoding,
  declared: string | undefined,
  contentTypeCharset: string | undefined,
): void {
  switch (decided.source) {
    case 'declaration':
      // Decided from this very declaration (a UTF-16 label there was refused by sniffEncoding).
      return;
    case 'bom': {
      if (declared === undefined) return;
      const label = canonicalLabel(declared, 'the XML declaration');
      const agrees = isUtf16(decided.label)
        ? isUtf16(label) && (!namesByteOrder(declared) || label === decided.label)
        : label === decided.label;
      if (!agrees) throw contradiction(decided, declared);
      return;
    }
    case 'utf16-pattern': {
      // XML 1.0 §4.3.3: UTF-16 without a BOM is only allowed where something names it.
      const naming = declared ?? unquote(contentTypeCharset?.trim() ?? '');
      if (
        naming === '' ||
        !namesByteOrder(naming) ||
        canonicalLabel(
          naming,
          declared === undefined ? 'the Content-Type charset' : 'the XML declaration',
        ) !== decided.label
      ) {
        throw new XmlError(
          'encoding',
          `the body is ${decided.label.toUpperCase()} without a byte order mark, ${
            naming === '' ? 'and nothing names its encoding' : `but "${naming}" is named`
          }: start it with a byte order mark, or declare encoding="${decided.label.toUpperCase()}"`,
        );
      }
      return;
    }
    case 'content-type':
    case 'default':
      // Only a declaration past the sniff window gets here with an encoding in it.
      if (
        declared !== undefined &&
        canonicalLabel(declared, 'the XML declaration') !== decided.label
      )
        throw contradiction(decided, declared);
      return;
  }
}

function contradiction(decided: SniffedEncoding, declared: string): XmlError {
  return new XmlError(
    'encoding',
    `the XML declaration says encoding="${declared}", but the body is ${describeEncoding(decided)}: make them agree`,
  );
}

function isUtf16(label: string): boolean {
  return label === 'utf-16le' || label === 'utf-16be';
}

/** UTF-16LE and UTF-16BE name a byte order; "UTF-16" (and its aliases) leave it to the BOM. */
function namesByteOrder(label: string): boolean {
  const key = label.trim().toLowerCase();
  return key === 'utf-16le' || key === 'utf-16be';
}

/** A fatal, BOM-stripping TextDecoder for a sniffed encoding. */
export function createDecoder(encoding: SniffedEncoding): TextDecoder {
  return new TextDecoder(encoding.label, { fatal: true });
}

/** Human-readable origin of an encoding decision, for 'encoding' error messages. */
export function describeEncoding(encoding: SniffedEncoding): string {
  switch (encoding.source) {
    case 'bom':
      return `${encoding.label} (from the byte order mark)`;
    case 'utf16-pattern':
      return `${encoding.label} (detected from the first bytes)`;
    case 'declaration':
      return `${encoding.label} (the XML declaration says "${encoding.declared ?? ''}")`;
    case 'content-type':
      return `${encoding.label} (Content-Type charset "${encoding.declared ?? ''}")`;
    case 'default':
      return `${encoding.label} (no byte order mark, declaration or charset: the default)`;
  }
}

function fromContentType(charset: string | undefined): SniffedEncoding {
  if (charset === undefined) return UTF8;
  // Tolerate a quoted parameter value (charset="utf-8") in case the caller did not unquote it.
  const declared = unquote(charset.trim());
  if (declared === '') return UTF8;
  return {
    label: canonicalLabel(declared, 'the Content-Type charset'),
    source: 'content-type',
    declared,
  };
}

function unquote(s: string): string {
  return s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
}

function prefixMatch(head: Uint8Array, sig: readonly number[]): 'full' | 'partial' | 'none' {
  const len = Math.min(head.length, sig.length);
  for (let i = 0; i < len; i++) {
    if (head[i] !== sig[i]) return 'none';
  }
  return head.length >= sig.length ? 'full' : 'partial';
}

function isXmlSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

/** Index of the `?` of the declaration's `?>` within the sniff limit, or -1. */
function findDeclarationEnd(head: Uint8Array): number {
  const limit = Math.min(head.length, DECLARATION_SNIFF_LIMIT) - 1;
  for (let i = XML_DECL_OPEN.length; i < limit; i++) {
    if (head[i] === 0x3f && head[i + 1] === 0x3e) return i;
  }
  return -1;
}

const ENCODING_PSEUDO_ATTR = /[\t\n\r ]encoding[\t\n\r ]*=[\t\n\r ]*(?:"([^"]*)"|'([^']*)')/;

/** The encoding pseudo-attribute's value, or undefined. Only the declaration (< 1 KiB) is read. */
function declaredEncoding(head: Uint8Array, end: number): string | undefined {
  // latin1 maps each byte to one char, so a non-ASCII byte can never fake a match.
  const decl = Buffer.from(head.buffer, head.byteOffset, end).toString('latin1');
  const m = ENCODING_PSEUDO_ATTR.exec(decl);
  if (m === null) return undefined;
  return m[1] ?? m[2];
}
