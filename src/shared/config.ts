/**
 * Loading the configuration: YAML (or JSON) file → BRIDGE_* environment overrides → `file:`
 * secrets → schema. The only module that reads process.env; every problem is reported with its path.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { availableParallelism } from 'node:os';
import { parseDocument } from 'yaml';
import { configSchema, type Config } from './config-schema.js';
import { ConfigError, errorReason, type ConfigProblem } from './errors.js';
import { describeIssue, schemaKeys } from './config-messages.js';
import { checkTlsFiles, tlsBaseDir } from './tls-files.js';
import { UWS_BUILD_IDS, type UwsBuildId } from './uws.js';

export { splitHostPort } from './host-port.js';

export type { Config } from './config-schema.js';

/** Environment variables that override keys of the file, applied before validation. */
const ENV_OVERRIDES = {
  BRIDGE_LISTEN: ['listen'],
  BRIDGE_ADMIN_LISTEN: ['admin'],
  BRIDGE_WORKERS: ['workers'],
  BRIDGE_AMQP_URLS: ['amqp', 'urls'],
  BRIDGE_UWS_BUILD: ['uwsBuild'],
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

/**
 * True when UWS_USE_FALLBACK (the 20.30 package's own switch) asks for its JS fallback: the
 * bridge then takes no native build, and refuses to start unless the fallback is allowed.
 */
export function fallbackForcedByEnv(env: Env = process.env): boolean {
  const value = env['UWS_USE_FALLBACK'];
  return value !== undefined && ['1', 'true'].includes(value.toLowerCase());
}

/** The build `--version` reports: BRIDGE_UWS_BUILD when it names one, else auto. */
export function uwsBuildFromEnv(env: Env = process.env): 'auto' | UwsBuildId {
  const value = env['BRIDGE_UWS_BUILD'];
  return UWS_BUILD_IDS.find((id) => id === value) ?? 'auto';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses YAML text; syntax errors become problems with line numbers. */
export function parseConfigText(text: string, source: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        path: source,
        message: (e.message.split('\n')[0] ?? e.message).replace(/:$/, ''),
      })),
    );
  }
  return doc.toJS({ maxAliasCount: 100 }) as unknown;
}

/** Config paths set from the environment, and the variable that set each. */
export type EnvOrigins = ReadonlyMap<string, string>;

/** Applies BRIDGE_* overrides onto a raw (unvalidated) config object. */
export function applyEnvOverrides(
  raw: unknown,
  env: Env,
): { raw: unknown; problems: ConfigProblem[]; origins: EnvOrigins } {
  const problems: ConfigProblem[] = [];
  const origins = new Map<string, string>();
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
      parsed = value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    }
    let target = out;
    for (const key of path.slice(0, -1)) {
      const next = target[key];
      target[key] = isRecord(next) ? next : {};
      target = target[key] as Record<string, unknown>; // just assigned a record above
    }
    target[path[path.length - 1] as string] = parsed;
    origins.set(path.join('.'), name);
  }
  return { raw: out, problems, origins };
}

/** The variable a problem's value came from, when an override set it: `BRIDGE_AMQP_URLS (entry 2)`. */
function envPath(path: string, origins: EnvOrigins): string | undefined {
  for (const [at, name] of origins) {
    if (path === at) return name;
    const entry = path.startsWith(`${at}[`) ? /^\[(\d+)\]/.exec(path.slice(at.length)) : null;
    if (entry !== null) return `${name} (entry ${Number(entry[1]) + 1})`;
  }
  return undefined;
}

/** Marks a secret read from a file: `file:NAME` (in $CREDENTIALS_DIRECTORY) or `file:/absolute/path`. */
const SECRET_FILE_PREFIX = 'file:';

/** Where each secret came from, by config path (`amqp.urls[0]`): the file, or undefined if unreadable. */
export type SecretSources = ReadonlyMap<string, string | undefined>;

/** A place in the raw config that holds a secret, and whether it must come from a file. */
interface SecretSlot {
  readonly at: string;
  readonly value: unknown;
  readonly set: (value: string) => void;
  /** Partner credentials are never inline; AMQP URLs may be (a password-less URL is common). */
  readonly fileOnly: boolean;
}

/** Every secret-bearing key of a raw (cloned) config: `amqp.urls[]` and the partners' credentials. */
function secretSlots(out: Record<string, unknown>): SecretSlot[] {
  const slots: SecretSlot[] = [];
  const listAt = (list: unknown, at: string, fileOnly: boolean): void => {
    if (!Array.isArray(list)) return;
    list.forEach((value, i) =>
      slots.push({ at: `${at}[${i}]`, value, set: (v) => (list[i] = v), fileOnly }),
    );
  };
  if (isRecord(out['amqp'])) listAt(out['amqp']['urls'], 'amqp.urls', false);
  const partners = out['partners'];
  if (Array.isArray(partners)) {
    partners.forEach((p: unknown, i) => {
      if (!isRecord(p) || !isRecord(p['auth'])) return;
      const auth = p['auth'];
      const at = `partners[${i}].auth`;
      if (isRecord(auth['apiKey'])) listAt(auth['apiKey']['keys'], `${at}.apiKey.keys`, true);
      if (isRecord(auth['webhook']))
        listAt(auth['webhook']['secrets'], `${at}.webhook.secrets`, true);
      const wechat = auth['wechat'];
      if (isRecord(wechat))
        slots.push({
          at: `${at}.wechat.token`,
          value: wechat['token'],
          set: (v) => (wechat['token'] = v),
          fileOnly: true,
        });
    });
  }
  return slots;
}

/**
 * Replaces the `file:` references of secret-bearing keys (`amqp.urls` entries, partner keys,
 * webhook secrets and WeChat tokens) by the content of the file, so secrets stay out of the
 * YAML: under systemd, `LoadCredential=NAME:/path` hands the file to the service as
 * $CREDENTIALS_DIRECTORY/NAME. A relative name is resolved in $CREDENTIALS_DIRECTORY.
 * Surrounding whitespace (the final newline) is dropped. Partner credentials written inline are
 * refused. Problems name the file, never its content.
 */
export function resolveSecretFiles(
  raw: unknown,
  env: Env,
): { raw: unknown; problems: ConfigProblem[]; sources: SecretSources } {
  const problems: ConfigProblem[] = [];
  const sources = new Map<string, string | undefined>();
  if (!isRecord(raw)) return { raw, problems, sources };
  const out = structuredClone(raw);
  const credentials = env['CREDENTIALS_DIRECTORY'];
  for (const { at, value: entry, set, fileOnly } of secretSlots(out)) {
    if (entry === undefined || (typeof entry !== 'string' && !fileOnly)) continue;
    // A number or list where a partner secret belongs is an inline secret too (YAML reads
    // `token: 20250101` as a number): refused here, so the schema never quotes it.
    if (typeof entry !== 'string' || !entry.startsWith(SECRET_FILE_PREFIX)) {
      if (fileOnly) {
        sources.set(at, undefined);
        problems.push({
          path: at,
          message:
            'must be a file reference (file:NAME in $CREDENTIALS_DIRECTORY, or file:/absolute/path): ' +
            'partner secrets are never written into the config',
        });
      }
      continue;
    }
    const ref = entry.slice(SECRET_FILE_PREFIX.length);
    sources.set(at, undefined);
    if (ref === '') {
      problems.push({ path: at, message: `"${SECRET_FILE_PREFIX}" names no file` });
      continue;
    }
    if (!isAbsolute(ref) && (credentials === undefined || credentials === '')) {
      problems.push({
        path: at,
        message:
          `${entry} is relative to $CREDENTIALS_DIRECTORY, which is not set (systemd sets it for LoadCredential=); ` +
          'give an absolute path or set CREDENTIALS_DIRECTORY',
      });
      continue;
    }
    const file = isAbsolute(ref) ? ref : resolvePath(credentials ?? '', ref);
    let value: string;
    try {
      value = readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push({ path: at, message: `cannot read secret file ${file} (${errorReason(err)})` });
      continue;
    }
    if (value === '') problems.push({ path: at, message: `secret file ${file} is empty` });
    else if (/[\r\n]/.test(value))
      problems.push({
        path: at,
        message: `secret file ${file} must hold one value on a single line`,
      });
    else {
      set(value);
      sources.set(at, file);
    }
  }
  return { raw: out, problems, sources };
}

/** The schema's keys, for "did you mean" (computed at the first invalid config). */
let knownKeys: Set<string> | undefined;

/**
 * Validates a raw config object; throws ConfigError listing every problem. `sources` (from
 * resolveSecretFiles) names the file behind a value read from one, and silences the schema's
 * complaint about a reference that could not be read (already reported).
 */
export function validateConfig(
  raw: unknown,
  envProblems: readonly ConfigProblem[] = [],
  sources: SecretSources = new Map(),
  origins: EnvOrigins = new Map(),
): Config {
  const result = configSchema.safeParse(raw);
  const problems: ConfigProblem[] = [...envProblems];
  if (!result.success) {
    knownKeys ??= schemaKeys(configSchema);
    for (const issue of result.error.issues) {
      for (const { path, message } of describeIssue(issue, raw, knownKeys)) {
        const fromEnv = envPath(path, origins);
        if (!sources.has(path)) problems.push({ path: fromEnv ?? path, message });
        else {
          const file = sources.get(path);
          if (file !== undefined)
            problems.push({
              path: fromEnv ?? path,
              message: `${message} (value read from ${file})`,
            });
        }
      }
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
  const overridden = applyEnvOverrides(parseConfigText(text, file), env);
  const secrets = resolveSecretFiles(overridden.raw, env);
  const config = validateConfig(
    secrets.raw,
    [...overridden.problems, ...secrets.problems],
    secrets.sources,
    overridden.origins,
  );
  if (config.tls === undefined) return config;
  const files = checkTlsFiles(config.tls, tlsBaseDir(file, env));
  if (files.problems.length > 0) throw new ConfigError(files.problems);
  return { ...config, tls: files.tls };
}

/** The worker count `workers: auto` resolves to on this machine. */
export function resolveWorkerCount(config: Config): number {
  return config.workers === 'auto' ? availableParallelism() : config.workers;
}
