/** `host:port` handling, kept apart from config.ts so workers need not load the YAML and schema libraries. */

/** Splits `host:port` (IPv6 in brackets). */
export function splitHostPort(value: string): { host: string; port: number } {
  const idx = value.lastIndexOf(':');
  const host = value.slice(0, idx).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(value.slice(idx + 1)) };
}
