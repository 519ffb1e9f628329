/**
 * The schema's findings as sentences an operator can act on: an unknown key is named where it is,
 * with the closest key the schema knows ("workrs: unknown key; did you mean workers?"); a missing
 * or wrong route `mode` lists the modes; a missing value says what it should be.
 */
import type { z } from 'zod';
import type { ConfigProblem } from './errors.js';

type Issue = z.core.$ZodIssue;

/** A path as the config file spells it: `routes[1].mode`, `(root)` for the top. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const step of path) {
    if (typeof step === 'number') out += `[${step}]`;
    else out += out === '' ? String(step) : `.${String(step)}`;
  }
  return out === '' ? '(root)' : out;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let at: unknown = raw;
  for (const step of path) {
    if (typeof at !== 'object' || at === null) return undefined;
    at = (at as Record<PropertyKey, unknown>)[step]; // walking parsed YAML: plain objects and arrays
  }
  return at;
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `the string "${value}"`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return `${typeof value} ${String(value)}`;
  return typeof value;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] as number; // j <= b.length
      row[j] = Math.min(
        above + 1,
        (row[j - 1] as number) + 1,
        diagonal + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      diagonal = above;
    }
  }
  return row[b.length] as number;
}

/** The known key closest to `key`, if it is a plausible typo of it. */
function closestKey(key: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(key.length / 3))
    ? best
    : undefined;
}

/** Every object key the schema knows anywhere (for suggestions). */
export function schemaKeys(
  schema: unknown,
  into = new Set<string>(),
  seen = new Set<unknown>(),
): Set<string> {
  if (typeof schema !== 'object' || schema === null || seen.has(schema)) return into;
  seen.add(schema);
  // zod 4 keeps each schema's definition in `_zod.def`: walk objects, arrays, unions and wrappers.
  const def = (schema as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
  if (def === undefined) return into;
  const shape = def['shape'];
  if (typeof shape === 'object' && shape !== null) {
    for (const [key, child] of Object.entries(shape)) {
      into.add(key);
      schemaKeys(child, into, seen);
    }
  }
  for (const field of ['element', 'innerType', 'in', 'out', 'valueType'])
    schemaKeys(def[field], into, seen);
  const options = def['options'];
  if (Array.isArray(options)) for (const option of options) schemaKeys(option, into, seen);
  return into;
}

/** One schema issue as problems (an issue about several unknown keys is one problem per key). */
export function describeIssue(
  issue: Issue,
  raw: unknown,
  knownKeys: ReadonlySet<string>,
): ConfigProblem[] {
  const path = formatPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => {
        const suggestion = closestKey(key, knownKeys);
        return {
          path: formatPath([...issue.path, key]),
          message: `unknown key${suggestion === undefined ? '' : `; did you mean ${suggestion}?`}`,
        };
      });
    case 'invalid_union': {
      const { discriminator, options } = issue as Issue & {
        discriminator?: unknown;
        options?: unknown;
      };
      if (typeof discriminator === 'string' && Array.isArray(options)) {
        const value = valueAt(raw, issue.path);
        const choices = options.map(String).join(', ');
        return [
          {
            path,
            message:
              value === undefined
                ? `is required: one of ${choices}`
                : `${kindOf(value)} is not one of ${choices}`,
          },
        ];
      }
      return [{ path, message: issue.message }];
    }
    case 'invalid_type': {
      const value = valueAt(raw, issue.path);
      const expected = String(issue.expected);
      const wanted =
        expected === 'array' ? 'a list' : expected === 'object' ? 'a map' : `a ${expected}`;
      return [
        {
          path,
          message:
            value === undefined
              ? `is required: ${wanted}`
              : `must be ${wanted}, not ${kindOf(value)}`,
        },
      ];
    }
    case 'too_small': {
      const min = Number(issue.minimum);
      const bound = issue.inclusive === false ? `more than ${min}` : `at least ${min}`;
      if (issue.origin === 'array')
        return [{ path, message: `needs ${bound} ${min === 1 ? 'entry' : 'entries'}` }];
      if (issue.origin === 'string') return [{ path, message: `must be ${bound} characters long` }];
      return [{ path, message: `must be ${bound}, not ${kindOf(valueAt(raw, issue.path))}` }];
    }
    case 'too_big': {
      const max = Number(issue.maximum);
      const bound = issue.inclusive === false ? `less than ${max}` : `at most ${max}`;
      if (issue.origin === 'array') return [{ path, message: `takes ${bound} entries` }];
      if (issue.origin === 'string') return [{ path, message: `must be ${bound} characters long` }];
      return [{ path, message: `must be ${bound}, not ${kindOf(valueAt(raw, issue.path))}` }];
    }
    case 'invalid_value':
      return [
        {
          path,
          message: `must be one of ${issue.values.map(String).join(', ')}, not ${kindOf(valueAt(raw, issue.path))}`,
        },
      ];
    default:
      return [{ path, message: issue.message }];
  }
}
