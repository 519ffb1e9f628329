/**
 * One JSON object per line on stdout (journald- and jq-friendly), pino's line shape:
 * `time`, `level`, `pid`, `worker`, `msg`, plus bindings. Writes are synchronous on Linux pipes and
 * files, so nothing is lost at process.exit. Every string, at any depth, has AMQP URL passwords
 * masked, and fields named like credentials or signatures (see redact.ts) are replaced whole.
 */
import { isSensitiveKey, REDACTED, redactUrl } from './redact.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'fatal';
const LEVELS: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  fatal(msg: string, fields?: LogFields): void;
  child(bindings: LogFields): Logger;
}

/** Deep enough for config problems and header maps; deeper (or cyclic) values are cut. */
const MAX_DEPTH = 6;

function serialize(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactUrl(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (value instanceof Error) {
    const out: Record<string, unknown> = {
      type: value.name,
      message: redactUrl(value.message),
      stack: value.stack && redactUrl(value.stack),
    };
    if (value.cause !== undefined) out['cause'] = serialize(value.cause, depth + 1);
    return out;
  }
  if (Array.isArray(value)) return value.map((v: unknown) => serialize(v, depth + 1));
  const proto: unknown = Object.getPrototypeOf(value);
  // Class instances (Buffer, Date…) keep their own JSON form.
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value))
    out[k] = isSensitiveKey(k) ? REDACTED : serialize(v, depth + 1);
  return out;
}

export function createLogger(
  bindings: LogFields = {},
  minLevel: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stdout.write(line),
): Logger {
  const min = LEVELS[minLevel];
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LEVELS[level] < min) return;
    const record: Record<string, unknown> = {
      time: Date.now(),
      level,
      pid: process.pid,
      ...bindings,
    };
    if (fields)
      for (const [k, v] of Object.entries(fields))
        record[k] = isSensitiveKey(k) ? REDACTED : serialize(v);
    record['msg'] = redactUrl(msg);
    write(`${JSON.stringify(record)}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    fatal: (m, f) => emit('fatal', m, f),
    child: (more) => createLogger({ ...bindings, ...more }, minLevel, write),
  };
}
