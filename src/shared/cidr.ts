/**
 * CIDR networks for a partner's `sources` (CONTRACT.md "Partners (access control)"): parsed
 * strictly, so that a config checker can tell an operator exactly what is wrong, and matched
 * against client addresses as uWebSockets.js reports them (getRemoteAddressAsText).
 *
 * Own parsing rather than node:net's BlockList, after trying it on Node 20: BlockList does map
 * `::ffff:a.b.c.d` onto IPv4 subnets (what we want), but it also lets an IPv6 subnet such as
 * `::/0` match a plain IPv4 address, which our rule (an IPv4 network never matches a non-mapped
 * IPv6 client, and an IPv6 network never matches an IPv4 client) rules out, and it has no way
 * to explain a bad entry to an operator. Speed decides nothing: BlockList.check took about
 * 2 µs per call, and a partner's list is a handful of networks.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  /** The network address with all host bits zero: a uint32 for IPv4, 128 bits for IPv6. */
  readonly network: bigint;
  readonly prefix: number;
}

const IPV4_BITS = 32;
const IPV6_BITS = 128;
/** `::ffff:0:0/96`: the IPv4-mapped range, shifted down past its 32 IPv4 bits. */
const MAPPED_HIGH_BITS = 0xffffn;

function parseIPv4(text: string): bigint | undefined {
  // isIPv4 refuses leading zeros ("01.2.3.4"), which some parsers would read as octal.
  if (!isIPv4(text)) return undefined;
  let value = 0n;
  for (const octet of text.split('.')) value = (value << 8n) | BigInt(Number(octet));
  return value;
}

function parseIPv6(text: string): bigint | undefined {
  // isIPv6 accepts a zone index ("fe80::1%eth0"); a network or a client match cannot use one.
  if (!isIPv6(text) || text.includes('%')) return undefined;
  let hex = text;
  const lastColon = hex.lastIndexOf(':');
  const tail = hex.slice(lastColon + 1);
  if (tail.includes('.')) {
    // An embedded IPv4 tail ("::ffff:1.2.3.4") stands for the last two 16-bit groups.
    const v4 = parseIPv4(tail);
    if (v4 === undefined) return undefined;
    hex = `${hex.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = hex.split('::');
  let groups: string[];
  if (halves.length === 2) {
    const left = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
    const right = halves[1] === '' ? [] : (halves[1] ?? '').split(':');
    groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  } else {
    groups = hex.split(':');
  }
  if (groups.length !== 8) return undefined;
  let value = 0n;
  for (const group of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    value = (value << 16n) | BigInt(parseInt(group, 16));
  }
  return value;
}

function formatIPv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/** RFC 5952 text, the form an operator would write: lower case, longest zero run as `::`. */
function formatIPv6(value: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1; // a single zero group stays "0", never "::"
  for (let start = 0; start < 8;) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) [bestStart, bestLength] = [start, end - start];
    start = end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLength).join(':');
  return `${left}::${right}`;
}

function hostMask(bits: number, prefix: number): bigint {
  return (1n << BigInt(bits - prefix)) - 1n;
}

/**
 * Parses `address/prefix`, or a bare address meaning a single host (/32 or /128). Throws an
 * Error naming the entry and what is wrong with it; with host bits set it names the network
 * the operator probably meant instead of silently widening or narrowing the entry.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const v4 = parseIPv4(addressText);
  const v6 = v4 === undefined ? parseIPv6(addressText) : undefined;
  const family = v4 !== undefined ? 4 : v6 !== undefined ? 6 : undefined;
  const address = v4 ?? v6;
  if (family === undefined || address === undefined) {
    throw new Error(`${text}: "${addressText}" is not an IPv4 or IPv6 address`);
  }
  const bits = family === 4 ? IPV4_BITS : IPV6_BITS;
  let prefix = bits;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    // Digits only: Number() would also take "", " 24", "0x18" and "2e1".
    if (!/^(0|[1-9][0-9]*)$/.test(prefixText)) {
      throw new Error(`${text}: prefix "${prefixText}" is not a whole number`);
    }
    prefix = Number(prefixText);
    if (prefix > bits) {
      throw new Error(`${text}: prefix /${prefix} is out of range for IPv${family} (0 to ${bits})`);
    }
  }
  const network = address & ~hostMask(bits, prefix);
  if (network !== address) {
    const format = family === 4 ? formatIPv4 : formatIPv6;
    throw new Error(`${text} has host bits set; did you mean ${format(network)}/${prefix}?`);
  }
  if (family === 6 && prefix >= 96 && network >> 32n === MAPPED_HIGH_BITS) {
    // Mapped clients are matched as IPv4 (see CidrSet), so this entry could never match.
    const v4Network = network & 0xffffffffn;
    throw new Error(
      `${text} is an IPv4-mapped network, which matches no client; write ${formatIPv4(v4Network)}/${prefix - 96}`,
    );
  }
  return { family, network, prefix };
}

/** A client address as one family: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) counts as IPv4. */
function parseClient(address: string): { family: 4 | 6; value: bigint } | undefined {
  const v4 = parseIPv4(address);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIPv6(address);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === MAPPED_HIGH_BITS) return { family: 4, value: v6 & 0xffffffffn };
  return { family: 6, value: v6 };
}

/**
 * A client address as an operator writes it: uWebSockets.js reports clients of an IPv6 listener
 * as eight full groups (`0000:…:ffff:cb00:7105`); this gives `203.0.113.5` for IPv4-mapped ones
 * and RFC 5952 text for the rest. IPv4 text (the common case) and anything that does not parse
 * come back unchanged.
 */
export function canonicalAddress(address: string): string {
  if (!address.includes(':')) return address;
  const client = parseClient(address);
  if (client === undefined) return address;
  return client.family === 4 ? formatIPv4(client.value) : formatIPv6(client.value);
}

/**
 * The allowed client networks of one partner. An IPv4 network matches IPv4 clients, including
 * those a dual-stack socket reports as `::ffff:a.b.c.d`; an IPv6 network matches only clients
 * that are not IPv4-mapped, so `::/0` admits every IPv6 client but no IPv4 one: allowing
 * everyone takes both `0.0.0.0/0` and `::/0`.
 */
export class CidrSet {
  readonly #networks: readonly { family: 4 | 6; network: bigint; mask: bigint }[];

  /** Throws parseCidr's Error for the first entry that is not a valid network. */
  constructor(cidrs: readonly string[]) {
    this.#networks = cidrs.map((text) => {
      const { family, network, prefix } = parseCidr(text);
      const bits = family === 4 ? IPV4_BITS : IPV6_BITS;
      return { family, network, mask: ((1n << BigInt(bits)) - 1n) & ~hostMask(bits, prefix) };
    });
  }

  /** False for an address that does not parse: an unknown client is never allowed. */
  has(address: string): boolean {
    const client = parseClient(address);
    if (client === undefined) return false;
    return this.#networks.some(
      (entry) => entry.family === client.family && (client.value & entry.mask) === entry.network,
    );
  }
}
