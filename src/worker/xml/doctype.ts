/**
 * The document type declaration the bridge lets through with `allowDoctype` (never fetched, never
 * interpreted): saxes hands over its raw text without checking it, so its grammar is checked here
 * (XML 1.0 [28] doctypedecl and [75] ExternalID, W3C tests ibm-not-wf-P28-*), as is its name's
 * QName syntax (Namespaces in XML 1.0 §7).
 */
import { qnameProblem } from './namespaces.js';

// XML 1.0 fifth edition [4] NameStartChar and [4a] NameChar.
const NAME_START =
  ':A-Z_a-z\\u{C0}-\\u{D6}\\u{D8}-\\u{F6}\\u{F8}-\\u{2FF}\\u{370}-\\u{37D}\\u{37F}-\\u{1FFF}' +
  '\\u{200C}-\\u{200D}\\u{2070}-\\u{218F}\\u{2C00}-\\u{2FEF}\\u{3001}-\\u{D7FF}\\u{F900}-\\u{FDCF}' +
  '\\u{FDF0}-\\u{FFFD}\\u{10000}-\\u{EFFFF}';
// The combining marks come first: after another character ESLint would read them as combined.
const NAME = `[${NAME_START}][\\u{300}-\\u{36F}${NAME_START}\\-.0-9\\u{B7}\\u{203F}-\\u{2040}]*`;
const S = '[\\x20\\x09\\x0D\\x0A]+';
const SYSTEM_LITERAL = `(?:"[^"]*"|'[^']*')`;
// [13] PubidChar, without ' inside a '-quoted literal.
const PUBID_LITERAL = `(?:"[\\x20\\x0D\\x0Aa-zA-Z0-9\\-'()+,./:=?;!*#@$_%]*"|'[\\x20\\x0D\\x0Aa-zA-Z0-9\\-()+,./:=?;!*#@$_%]*')`;
const EXTERNAL_ID = `(?:SYSTEM${S}${SYSTEM_LITERAL}|PUBLIC${S}${PUBID_LITERAL}${S}${SYSTEM_LITERAL})`;
/** What saxes reports between `<!DOCTYPE` and `>` when there is no internal subset. */
const DOCTYPE_WITHOUT_SUBSET = new RegExp(`^${S}(${NAME})(?:${S}${EXTERNAL_ID})?(?:${S})?$`, 'u');

/**
 * Checks the text of a DOCTYPE without internal subset (as saxes reports it: everything between
 * `<!DOCTYPE` and `>`). Returns the problem as a sentence, or undefined.
 */
export function doctypeProblem(doctype: string): string | undefined {
  const name = DOCTYPE_WITHOUT_SUBSET.exec(doctype)?.[1];
  if (name === undefined) {
    return 'the DOCTYPE must be <!DOCTYPE name>, <!DOCTYPE name SYSTEM "uri"> or <!DOCTYPE name PUBLIC "public-id" "uri">';
  }
  const colon = name.indexOf(':');
  return colon === -1 ? undefined : qnameProblem(name, colon, 'element');
}
