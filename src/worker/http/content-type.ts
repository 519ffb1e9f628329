/** Parses a request's Content-Type: is it XML (RFC 7303), and which charset does it name. */

export interface MediaType {
  /** True when absent (defaults to application/xml) or an XML media type. */
  readonly xml: boolean;
  readonly charset: string | undefined;
}

const XML_TYPE = /^(?:application\/xml|text\/xml|application\/[a-z0-9!#$&^_.+-]+\+xml)$/;
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)"?/i;
const ABSENT: MediaType = { xml: true, charset: undefined };

/** Partners send the same few Content-Type values over and over. */
const seen = new Map<string, MediaType>();
const SEEN_MAX = 64;

export function parseContentType(header: string): MediaType {
  if (header === '') return ABSENT;
  const known = seen.get(header);
  if (known !== undefined) return known;
  const parsed = parse(header);
  if (seen.size < SEEN_MAX) seen.set(header, parsed);
  return parsed;
}

function parse(header: string): MediaType {
  const semi = header.indexOf(';');
  const type = (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase();
  if (!XML_TYPE.test(type)) return { xml: false, charset: undefined };
  return { xml: true, charset: semi === -1 ? undefined : CHARSET.exec(header)?.[1] };
}
