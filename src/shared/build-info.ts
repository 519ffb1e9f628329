/**
 * What is running: the bridge's version (package.json beside dist/), Node.js, and the
 * uWebSockets.js build (which package, native or its JS fallback, with SSL or not). Printed by
 * `--version`, logged at start and exported as `bridge_build_info`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { UwsBuild } from './uws.js';

export interface BuildInfo {
  readonly version: string;
  readonly node: string;
  /** e.g. `20.57.0 native`, or `20.30.0-unofficial.0 js-fallback`; `none` when no build loads. */
  readonly uws: string;
  /** The npm package the build came from, e.g. `@btc-vision/uwebsockets.js`. */
  readonly uwsPackage: string;
  /** The build serves TLS itself. */
  readonly tls: boolean;
}

function versionIn(file: string): string {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      'version' in parsed &&
      typeof parsed.version === 'string'
    )
      return parsed.version;
  } catch {
    // not there: an unusual layout
  }
  return 'unknown';
}

export function buildInfo(build: UwsBuild | undefined): BuildInfo {
  // dist/src/shared/build-info.js → the project root (installs keep package.json beside dist/).
  const version = versionIn(fileURLToPath(new URL('../../../package.json', import.meta.url)));
  return {
    version,
    node: process.version,
    uws:
      build === undefined ? 'none' : `${build.version} ${build.native ? 'native' : 'js-fallback'}`,
    uwsPackage: build === undefined ? 'none' : build.package.replace(/@[^@]+$/, ''),
    tls: build?.ssl ?? false,
  };
}

/** `notLoaded`: why no build loads, shown when none does. */
export function versionLine(info: BuildInfo, notLoaded = ''): string {
  const uws =
    info.uws === 'none'
      ? `none loads here: ${notLoaded}`
      : `${info.uws} (${info.uwsPackage}, ${info.tls ? 'native TLS' : 'no TLS'})`;
  return `xml-amqp-bridge ${info.version} (Node.js ${info.node}, uWebSockets.js ${uws})`;
}
