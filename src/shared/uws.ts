/**
 * Picks and loads the uWebSockets.js build this host can run. Two builds ship (README, "Supported
 * platforms"): 20.57 (SSL, Node.js 20/22/24/25, glibc ≥ 2.38) and 20.30 (no SSL, Node.js 16–20,
 * glibc ≥ 2.17). The newest one whose native binary loads wins; the primary decides and tells
 * its workers which one to load, so a host never runs two builds at once.
 *
 * Binaries are loaded by path, not through the packages' entry points: the 20.30 package's entry
 * silently falls back to a slow JS server when its binary does not load (docs/failure-modes.md
 * #9), and the loader must see why a binary did not load to say so. Only native modules export
 * getParts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as UwsModule from 'uWebSockets.js';

export type Uws = typeof UwsModule;

export const UWS_BUILD_IDS = ['20.57', '20.30'] as const;
export type UwsBuildId = (typeof UWS_BUILD_IDS)[number];
/** What a worker is told to load: a native build, or the 20.30 package's JS fallback. */
export type UwsLoad = UwsBuildId | 'js-fallback';

interface BuildSpec {
  readonly id: UwsBuildId;
  /** The dependency's name in package.json (npm aliases). */
  readonly dependency: string;
  /** Where the package keeps its `uws_<platform>_<arch>_<abi>.node` files. */
  readonly binaryDir: string;
  readonly ssl: boolean;
}

/** Newest first: the order `auto` tries them in. */
const BUILDS: readonly BuildSpec[] = [
  { id: '20.57', dependency: 'uws-20.57', binaryDir: '.', ssl: true },
  { id: '20.30', dependency: 'uWebSockets.js', binaryDir: 'binaries', ssl: false },
];

export interface UwsBuild {
  readonly id: UwsLoad;
  /** npm package and version, e.g. `@btc-vision/uwebsockets.js@20.57.0`. */
  readonly package: string;
  readonly version: string;
  /** The build can serve TLS itself (SSLApp works). */
  readonly ssl: boolean;
  readonly native: boolean;
}

export interface LoadedUws {
  readonly uws: Uws;
  readonly build: UwsBuild;
}

/** A build that did not load, and why, in words an operator can act on. */
export interface UwsRefusal {
  readonly id: UwsBuildId;
  readonly reason: string;
}

const require = createRequire(import.meta.url);

function packageOf(spec: BuildSpec): { dir: string; name: string; version: string } {
  // From the entry point up: the 20.57 package's `exports` does not export its package.json.
  let dir = path.dirname(require.resolve(spec.dependency));
  while (!existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir)
    dir = path.dirname(dir);
  const file = path.join(dir, 'package.json');
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown }; // an npm package.json
  return {
    dir,
    name: typeof parsed.name === 'string' ? parsed.name : spec.dependency,
    version: typeof parsed.version === 'string' ? parsed.version : 'unknown',
  };
}

/** The C library this process runs on, e.g. `2.36`; undefined off glibc. */
function glibcVersion(): string | undefined {
  const header = (
    process.report.getReport() as { header?: { glibcVersionRuntime?: unknown } }
  ) // Node's diagnostic report
  .header;
  return typeof header?.glibcVersionRuntime === 'string' ? header.glibcVersionRuntime : undefined;
}

function explain(err: unknown, binary: string): string {
  const message = err instanceof Error ? err.message : String(err);
  const glibc = /GLIBC_([0-9.]+)' not found/.exec(message);
  if (glibc !== null)
    return `its binary needs glibc ${glibc[1]}; this host has ${glibcVersion() ?? 'an older one'}`;
  if ((err as { code?: unknown }).code === 'MODULE_NOT_FOUND')
    return `it has no binary for Node.js ${process.versions.node} (ABI ${process.versions.modules}) on ${process.platform}-${process.arch} (${path.basename(binary)})`;
  return message.split('\n')[0] ?? message;
}

function tryNative(spec: BuildSpec): { loaded: LoadedUws } | { refusal: UwsRefusal } {
  const pkg = packageOf(spec);
  const binary = path.join(
    pkg.dir,
    spec.binaryDir,
    `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
  );
  let uws: Uws;
  try {
    uws = require(binary) as Uws; // the native addon; the package's d.ts describes its API
  } catch (err) {
    return { refusal: { id: spec.id, reason: explain(err, binary) } };
  }
  if (typeof (uws as { getParts?: unknown }).getParts !== 'function')
    return { refusal: { id: spec.id, reason: `${binary} is not the native module` } };
  const build = {
    id: spec.id,
    package: `${pkg.name}@${pkg.version}`,
    version: pkg.version,
    ssl: spec.ssl,
    native: true,
  };
  return { loaded: { uws, build } };
}

/**
 * Loads the first build of `choice` (`auto`: newest first) whose binary loads here. Without one,
 * `loaded` is undefined and `refusals` says why each was not taken.
 */
export function loadNativeUws(choice: 'auto' | UwsBuildId): {
  readonly loaded: LoadedUws | undefined;
  readonly refusals: readonly UwsRefusal[];
} {
  const refusals: UwsRefusal[] = [];
  for (const spec of BUILDS) {
    if (choice !== 'auto' && spec.id !== choice) continue;
    const attempt = tryNative(spec);
    if ('loaded' in attempt) return { loaded: attempt.loaded, refusals };
    refusals.push(attempt.refusal);
  }
  return { loaded: undefined, refusals };
}

/** The 20.30 package's pure-JS server: development only (allowUwsFallback). */
function loadJsFallback(): LoadedUws {
  const spec = BUILDS.find((b) => b.id === '20.30')!;
  const pkg = packageOf(spec);
  // Its server directly: the package's entry would retry the binary and print a warning.
  const uws = require(path.join(pkg.dir, 'dist', 'index.js')) as Uws; // implements the same API in JS
  const build = {
    id: 'js-fallback' as const,
    package: `${pkg.name}@${pkg.version}`,
    version: pkg.version,
    ssl: false,
    native: false,
  };
  return { uws, build };
}

/** A worker loads what the primary chose; undefined when that build no longer loads. */
export function loadChosenUws(load: UwsLoad): LoadedUws | undefined {
  return load === 'js-fallback' ? loadJsFallback() : loadNativeUws(load).loaded;
}

export function describeRefusals(refusals: readonly UwsRefusal[]): string {
  return refusals.map((r) => `${r.id}: ${r.reason}`).join('; ');
}
