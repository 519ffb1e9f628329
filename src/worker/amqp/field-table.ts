/**
 * Pure: AMQP 0-9-1 field-table entries, encoded the way amqplib 2.x encodes a JS value (strings
 * as long strings `S`, null `V`, booleans `t`, integers as the smallest of `b s I l`, other numbers
 * `d`, arrays `A`, Buffers `x`, objects `F`), so a pre-encoded constant header means exactly what
 * amqplib sent for it before. Used once per route, never per request.
 */

/** A header value the bridge can pre-encode. */
export type FieldValue =
  | string
  | number
  | boolean
  | null
  | Buffer
  | readonly FieldValue[]
  | { readonly [key: string]: FieldValue };

function isFloatingPoint(n: number): boolean {
  return n >= 0x8000000000000000 || (Math.abs(n) < 0x4000000000000 && Math.floor(n) !== n);
}

function valueBytes(value: FieldValue): Buffer {
  if (typeof value === 'string') {
    const text = Buffer.from(value, 'utf8');
    const head = Buffer.allocUnsafe(5);
    head.write('S', 0, 'latin1');
    head.writeUInt32BE(text.length, 1);
    return Buffer.concat([head, text]);
  }
  if (typeof value === 'boolean') return Buffer.from([0x74, value ? 1 : 0]);
  if (value === null) return Buffer.from('V', 'latin1');
  if (typeof value === 'number') {
    if (isFloatingPoint(value)) {
      const b = Buffer.allocUnsafe(9);
      b.write('d', 0, 'latin1');
      b.writeDoubleBE(value, 1);
      return b;
    }
    if (value >= -128 && value < 128) return Buffer.from([0x62, value & 0xff]);
    if (value >= -0x8000 && value < 0x8000) {
      const b = Buffer.allocUnsafe(3);
      b.write('s', 0, 'latin1');
      b.writeInt16BE(value, 1);
      return b;
    }
    if (value >= -0x80000000 && value < 0x80000000) {
      const b = Buffer.allocUnsafe(5);
      b.write('I', 0, 'latin1');
      b.writeInt32BE(value, 1);
      return b;
    }
    const b = Buffer.allocUnsafe(9);
    b.write('l', 0, 'latin1');
    b.writeBigInt64BE(BigInt(value), 1);
    return b;
  }
  if (Buffer.isBuffer(value)) {
    const head = Buffer.allocUnsafe(5);
    head.write('x', 0, 'latin1');
    head.writeUInt32BE(value.length, 1);
    return Buffer.concat([head, value]);
  }
  if (Array.isArray(value)) {
    const items = Buffer.concat((value as readonly FieldValue[]).map(valueBytes));
    return Buffer.concat([Buffer.from('A', 'latin1'), lengthPrefixed(items)]);
  }
  return Buffer.concat([
    Buffer.from('F', 'latin1'),
    lengthPrefixed(encodeEntries(value as { readonly [key: string]: FieldValue })),
  ]);
}

function lengthPrefixed(bytes: Buffer): Buffer {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(bytes.length, 0);
  return Buffer.concat([head, bytes]);
}

/** The name part of one entry: a short string (at most 255 bytes). */
export function encodeFieldName(name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length > 255) throw new RangeError(`header name "${name}" is longer than 255 bytes`);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** The entries of a field table, without its 4-byte length (so several can be concatenated). */
export function encodeEntries(table: { readonly [key: string]: FieldValue | undefined }): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(table)) {
    if (value === undefined) continue;
    parts.push(encodeFieldName(name), valueBytes(value));
  }
  return Buffer.concat(parts);
}
