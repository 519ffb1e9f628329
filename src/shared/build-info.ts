/**
 * What is running: the bridge's version (package.json beside dist/), Node.js, and the
 * uWebSockets.js build, native or its JS fallback. Printed by `--version` and exported as
 * `bridge_build_info{version,node,uws}`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  readonly version: string;
  readonly node: string;
  /** e.g. `20.30.0-unofficial.0 native`, or `… js-fallback` when the binary did not load. */
  readonly uws: string;
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

export function buildInfo(uwsNative: boolean): BuildInfo {
  // dist/src/shared/build-info.js → the project root (installs keep package.json beside dist/).
  const version = versionIn(fileURLToPath(new URL('../../../package.json', import.meta.url)));
  const uwsPackage = createRequire(import.meta.url).resolve('uWebSockets.js/package.json');
  return {
    version,
    node: process.version,
    uws: `${versionIn(uwsPackage)} ${uwsNative ? 'native' : 'js-fallback'}`,
  };
}

export function versionLine(info: BuildInfo): string {
  return `xml-amqp-bridge ${info.version} (Node.js ${info.node}, uWebSockets.js ${info.uws})`;
}
