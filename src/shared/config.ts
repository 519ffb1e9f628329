/**
 * Loading the configuration: YAML (or JSON) file → BRIDGE_* environment overrides → schema.
 * The only module that reads process.env; every problem is reported with its path.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseDocument } from 'yaml';
import { configSchema, type Config } from './config-schema.js';
import { ConfigError, type ConfigProblem } from './errors.js';

export { splitHostPort } from './host-port.js';

export type { Config } from './config-schema.js';

/** Environment variables that override keys of the file, applied before validation. */
const ENV_OVERRIDES = {
  BRIDGE_LISTEN: ['listen'],
  BRIDGE_ADMIN_LISTEN: ['admin'],
  BRIDGE_WORKERS: ['workers'],
  BRIDGE_AMQP_URLS: ['amqp', 'urls'],
} as const;

type Env = Readonly<Record<string, string | undefined>>;

/** Path of the config file named by BRIDGE_CONFIG, if any. */
export function configPathFromEnv(env: Env = process.env): string | undefined {
  const value = env['BRIDGE_CONFIG'];
  return value === undefined || value === '' ? undefined : value;
}

/** systemd's notification socket (Type=notify), when the service manager gave us one. */
export function notifySocketFromEnv(env: Env = process.env): string | undefined {
  const value = env['NOTIFY_SOCKET'];
  return value === undefined || value === '' ? undefined : value;
}

/** True when the operator asked to run on uWS's slow JS fallback through the environment. */
export function fallbackAllowedByEnv(env: Env = process.env): boolean {
  return env['BRIDGE_ALLOW_UWS_FALLBACK'] === '1' || env['BRIDGE_ALLOW_UWS_FALLBACK'] === 'true';
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const step of path) {
    if (typeof step === 'number') out += `[${step}]`;
    else out += out === '' ? String(step) : `.${String(step)}`;
  }
  return out === '' ? '(root)' : out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses YAML text; syntax errors become problems with line numbers. */
export function parseConfigText(text: string, source: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({ path: source, message: (e.message.split('\n')[0] ?? e.message).replace(/:$/, '') })),
    );
  }
  return doc.toJS({ maxAliasCount: 100 }) as unknown;
}

/** Applies BRIDGE_* overrides onto a raw (unvalidated) config object. */
export function applyEnvOverrides(raw: unknown, env: Env): { raw: unknown; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const out: Record<string, unknown> = isRecord(raw) ? structuredClone(raw) : {};
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let parsed: unknown = value;
    if (name === 'BRIDGE_WORKERS') {
      parsed = value === 'auto' ? 'auto' : /^\d+$/.test(value) ? Number(value) : undefined;
      if (parsed === undefined) {
        problems.push({ path: name, message: `must be a number or "auto", got "${value}"` });
        continue;
      }
    } else if (name === 'BRIDGE_AMQP_URLS') {
      parsed = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
    }
    let target = out;
    for (const key of path.slice(0, -1)) {
      const next = target[key];
      target[key] = isRecord(next) ? next : {};
      target = target[key] as Record<string, unknown>; // just assigned a record above
    }
    target[path[path.length - 1] as string] = parsed;
  }
  return { raw: out, problems };
}

/** Validates a raw config object; throws ConfigError listing every problem. */
export function validateConfig(raw: unknown, envProblems: readonly ConfigProblem[] = []): Config {
  const result = configSchema.safeParse(raw);
  const problems: ConfigProblem[] = [...envProblems];
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push({ path: formatPath(issue.path), message: issue.message });
    }
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  return result.data;
}

/** Reads, overrides and validates the config file. Throws ConfigError. */
export function loadConfig(file: string, env: Env = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: file, message: `cannot read: ${(err as Error).message}` }]);
  }
  const { raw, problems } = applyEnvOverrides(parseConfigText(text, file), env);
  return validateConfig(raw, problems);
}

/** The worker count `workers: auto` resolves to on this machine. */
export function resolveWorkerCount(config: Config): number {
  return config.workers === 'auto' ? availableParallelism() : config.workers;
}
