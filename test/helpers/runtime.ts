/**
 * Where a test's bridge runs: this host's Node.js (the default), or Node.js 20, 22 or 24 inside
 * the Debian 13 root of the platform tier (test/platforms/debian13-root.sh builds it once and
 * caches it; in-root.sh runs Node there with the host's network, /tmp and project folder).
 * `BRIDGE_TEST_RUNTIME=debian13-node24` moves every bridge a test file starts into the root; the
 * platform tier runs the e2e files that way.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToExit } from './child.js';

/** The project root (this file is compiled to dist/test/helpers/); bridge.ts exports the same. */
const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface Runtime {
  /** e.g. `host`, `debian13-node24`. */
  readonly name: string;
  /** Spawns Node.js with these arguments in this runtime. */
  readonly command: string;
  readonly prefix: readonly string[];
}

export const HOST_RUNTIME: Runtime = { name: 'host', command: process.execPath, prefix: [] };

export const ROOT_NODE_MAJORS = ['20', '22', '24', '25', '26'] as const;
export type RootNodeMajor = (typeof ROOT_NODE_MAJORS)[number];

let root: Promise<string> | undefined;

/** The cached Debian 13 root's path, building it first if this machine has none (≈30 s). */
export function debian13Root(): Promise<string> {
  root ??= (async () => {
    const script = path.join(PROJECT_ROOT, 'test', 'platforms', 'debian13-root.sh');
    const run = await runToExit('bash', [script], { timeoutMs: 15 * 60_000 });
    const built = run.stdout.trim().split('\n').pop() ?? '';
    if (run.code !== 0 || built === '')
      throw new Error(
        `building the Debian 13 root failed (${run.code}): ${run.stderr.slice(-2000)}`,
      );
    return built;
  })();
  return root;
}

export async function debian13Runtime(major: RootNodeMajor): Promise<Runtime> {
  return {
    name: `debian13-node${major}`,
    command: 'bash',
    prefix: [
      path.join(PROJECT_ROOT, 'test', 'platforms', 'in-root.sh'),
      await debian13Root(),
      major,
    ],
  };
}

/** The runtime BRIDGE_TEST_RUNTIME names (`host` or `debian13-node<major>`); host when unset. */
export async function runtimeFromEnv(env = process.env): Promise<Runtime> {
  const name = env['BRIDGE_TEST_RUNTIME'];
  if (name === undefined || name === '' || name === 'host') return HOST_RUNTIME;
  const major = /^debian13-node(\d+)$/.exec(name)?.[1];
  const known = ROOT_NODE_MAJORS.find((m) => m === major);
  if (known === undefined)
    throw new Error(
      `BRIDGE_TEST_RUNTIME=${name}: expected host or debian13-node{${ROOT_NODE_MAJORS.join(',')}}`,
    );
  return debian13Runtime(known);
}
