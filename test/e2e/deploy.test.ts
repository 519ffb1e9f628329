/** E2E of deploy/: the systemd units (verify, security, settings), install.sh into a temporary root, the installed release serving, reload.sh. */
import assert from 'node:assert/strict';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parseDocument } from 'yaml';
import {
  baseConfig,
  parseLogLine,
  PROJECT_ROOT,
  startBridge,
  waitUntilReady,
  workerPids,
  type LogLine,
} from '../helpers/bridge.js';
import { runToExit, startChild, type Child, type Run } from '../helpers/child.js';
import { openBroker, uniqueName, messageIds } from '../helpers/broker.js';
import { postXml, xmlBody } from '../helpers/load.js';
import { waitUntil } from '../helpers/poll.js';
import { debian13Root } from '../helpers/runtime.js';

const DEPLOY = path.join(PROJECT_ROOT, 'deploy');
const INSTALL_SH = path.join(DEPLOY, 'install.sh');
const RELOAD_SH = path.join(DEPLOY, 'reload.sh');
const MAIN_UNIT = 'xml-amqp-bridge.service';
const HANDOVER_UNIT = 'xml-amqp-bridge-handover.service';
const SYSCTL = 'etc/sysctl.d/90-xml-amqp-bridge.conf';
/** The node the installer finds on PATH, as it writes it into the units. */
const NODE = realpathSync(process.execPath);
const PACKAGE = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}; // the project's own package.json

function run(
  argv: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 90_000,
): Promise<Run> {
  const [cmd = 'false', ...args] = argv;
  return runToExit(cmd, args, { env: { ...process.env, ...env }, timeoutMs });
}

function tempDir(t: { after: (fn: () => void) => void }, what: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `deploy-test-${what}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Entry {
  readonly type: 'f' | 'd' | 'l';
  /** Permission bits in octal, e.g. '644'. */
  readonly mode: string;
  readonly uid: number;
  readonly target: string | undefined;
  /** Size and mtime: a rewrite of the file shows here. */
  readonly stamp: string;
}

/** Every path under `root` (relative, '/'-separated) with its type, mode, owner, link target and stamp. */
function tree(root: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string): void => {
    for (const d of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const p = rel === '' ? d.name : `${rel}/${d.name}`;
      const st = lstatSync(path.join(root, p));
      const type = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : 'f';
      out.set(p, {
        type,
        mode: (st.mode & 0o7777).toString(8),
        uid: st.uid,
        target: type === 'l' ? readlinkSync(path.join(root, p)) : undefined,
        stamp: type === 'f' ? `${st.size}@${st.mtimeMs}` : '',
      });
      if (type === 'd') walk(p);
    }
  };
  walk('');
  return out;
}

/** A unit file as its directives: `[Section] Key=value` lines, comments and blank lines dropped. */
function directives(text: string): string[] {
  let section = '';
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (/^\[.+\]$/.test(line)) section = line;
    else out.push(`${section} ${line}`);
  }
  return out;
}

function directive(text: string, key: string): string[] {
  return directives(text)
    .map((d) => d.slice(d.indexOf(' ') + 1))
    .filter((d) => d.startsWith(`${key}=`))
    .map((d) => d.slice(key.length + 1));
}

const unitText = (name: string): string => readFileSync(path.join(DEPLOY, name), 'utf8');

/** deploy/config.yaml, the config install.sh installs. */
const SHIPPED_CONFIG = parseDocument(
  readFileSync(path.join(DEPLOY, 'config.yaml'), 'utf8'),
).toJS() as {
  shutdownTimeoutMs: number;
  amqp: { urls: unknown };
}; // the fields read below; check-config validates the whole file in the install test

/** systemd time span (`30s`, `5min`, `90`) in milliseconds. */
function timespanMs(value: string): number {
  const m = /^(\d+)(ms|s|min)?$/.exec(value);
  assert.ok(m, `unparsed time span ${value}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'min' ? n * 60_000 : n * 1000;
}

interface Installed {
  readonly child: Child<LogLine>;
  readonly logs: readonly LogLine[];
  readonly port: number;
  readonly adminPort: number;
}

/** Runs an installed release's bin the way the unit does, on ephemeral loopback ports; resolves once it logs "ready to serve". */
async function startInstalled(
  mainJs: string,
  configFile: string,
  env: Record<string, string>,
): Promise<Installed> {
  const { child, ready } = await startChild(NODE, [mainJs, '--config', configFile], {
    name: 'the installed bridge',
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      NODE_ENV: 'production',
      BRIDGE_LISTEN: '127.0.0.1:0',
      BRIDGE_ADMIN_LISTEN: '127.0.0.1:0',
      ...env,
    },
    parse: parseLogLine,
    killAfterMs: 20_000,
    ready: (l) => l.msg === 'ready to serve',
    readyTimeoutMs: 30_000,
  });
  return {
    child,
    logs: child.lines,
    port: Number(ready['port']),
    adminPort: Number(ready['adminPort']),
  };
}

describe('systemd units (deploy/*.service)', { timeout: 60_000 }, () => {
  it('systemd-analyze verify passes on both units, as install.sh writes them', async (t) => {
    const dir = tempDir(t, 'verify');
    for (const name of [MAIN_UNIT, HANDOVER_UNIT]) {
      writeFileSync(
        path.join(dir, name),
        unitText(name).replace(/^(Exec\w*=)\/usr\/bin\/node /gm, `$1${NODE} `),
      );
    }
    const out = await run([
      'systemd-analyze',
      'verify',
      path.join(dir, MAIN_UNIT),
      path.join(dir, HANDOVER_UNIT),
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stderr.trim(), '', 'systemd-analyze verify warned');
  });

  it('systemd-analyze security rates the unit OK or better', async (t) => {
    const out = await run([
      'systemd-analyze',
      'security',
      '--offline=true',
      '--no-pager',
      path.join(DEPLOY, MAIN_UNIT),
    ]);
    assert.equal(out.code, 0, out.stderr);
    const overall = /Overall exposure level for \S+: (\d+\.\d) (\w+)/.exec(out.stdout);
    assert.ok(overall, out.stdout);
    const exposures = out.stdout
      .split('\n')
      .filter((l) => l.startsWith('✗'))
      .map((l) => ({
        what:
          l
            .slice(1)
            .trim()
            .split(/\s{2,}/)[0] ?? l,
        weight: Number(/(\d+\.\d)\s*$/.exec(l)?.[1] ?? 0),
      }))
      .sort((a, b) => b.weight - a.weight);
    t.diagnostic(
      `exposure ${overall[1]} ${overall[2]}; remaining: ${exposures.map((e) => `${e.what} ${e.weight}`).join(', ')}`,
    );
    assert.ok(
      ['PERFECT', 'SAFE', 'OK'].includes(overall[2] ?? ''),
      `exposure ${overall[1]} ${overall[2]}`,
    );
  });

  it('states what the product needs: notify readiness, SIGTERM drain within TimeoutStopSec, SIGHUP reload, C10k, sandbox, credentials', () => {
    const unit = unitText(MAIN_UNIT);
    const one = (key: string): string => {
      const values = directive(unit, key);
      assert.equal(values.length, 1, `${key}= appears ${values.length} times`);
      return values[0] ?? '';
    };
    assert.equal(one('Type'), 'notify');
    assert.equal(
      one('NotifyAccess'),
      'all',
      'READY=1 comes from systemd-notify, a child of the primary',
    );
    assert.equal(one('KillSignal'), 'SIGTERM');
    assert.equal(one('Restart'), 'on-failure');
    // The primary waits shutdownTimeoutMs + 2 s for its workers (src/primary/main.ts).
    assert.ok(
      timespanMs(one('TimeoutStopSec')) > SHIPPED_CONFIG.shutdownTimeoutMs + 2000,
      'TimeoutStopSec must exceed shutdownTimeoutMs + 2 s',
    );
    assert.ok(Number(one('LimitNOFILE')) >= 16_384, 'LimitNOFILE too low for 10,000 connections');
    const reload = directive(unit, 'ExecReload');
    assert.match(reload[0] ?? '', / check-config \/etc\/xml-amqp-bridge\/config\.yaml$/);
    assert.match(reload[1] ?? '', /\/deploy\/reload\.sh \$MAINPID$/);
    assert.match(
      one('ExecStart'),
      /^\/usr\/bin\/node \/opt\/xml-amqp-bridge\/current\/dist\/src\/primary\/main\.js --config \/etc\/xml-amqp-bridge\/config\.yaml \$BRIDGE_TAKEOVER$/,
    );
    assert.equal(one('CapabilityBoundingSet'), '');
    assert.deepEqual(
      directive(unit, 'MemoryDenyWriteExecute'),
      [],
      'V8 needs W+X memory for its JIT',
    );
    for (const [key, value] of [
      ['DynamicUser', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX'],
    ] as const) {
      assert.equal(one(key), value, key);
    }
    assert.ok(directive(unit, 'SystemCallFilter').includes('@system-service'));
    assert.equal(one('LoadCredential'), 'amqp-url:/etc/xml-amqp-bridge/credentials/amqp-url');
    assert.deepEqual(
      SHIPPED_CONFIG.amqp.urls,
      ['file:amqp-url'],
      'the shipped config must take the broker URL from the credential',
    );
  });

  it('the handover unit differs from the main one only in release, admin port, --takeover and [Install]', () => {
    const main = directives(unitText(MAIN_UNIT))
      .filter(
        (d) =>
          !d.startsWith('[Install]') &&
          !d.includes('BRIDGE_TAKEOVER=') &&
          !d.includes('EnvironmentFile=-/run/xml-amqp-bridge-takeover.env'),
      )
      .map((d) =>
        d
          .replaceAll('/opt/xml-amqp-bridge/current/', '/opt/xml-amqp-bridge/next/')
          .replace('BRIDGE_ADMIN_LISTEN=127.0.0.1:9464', 'BRIDGE_ADMIN_LISTEN=127.0.0.1:9465')
          .replace(' $BRIDGE_TAKEOVER', ' --takeover'),
      )
      .filter((d) => !d.startsWith('[Unit] Description='));
    const handover = directives(unitText(HANDOVER_UNIT)).filter(
      (d) => !d.startsWith('[Unit] Description='),
    );
    assert.deepEqual(handover, main);
  });
});

describe('deploy/install.sh', { timeout: 100_000 }, () => {
  it('lays out every file with the right modes into a temporary root, and a second run changes nothing', async (t) => {
    const root = tempDir(t, 'layout');
    const first = await run([INSTALL_SH, '--root', root]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /config\.yaml: OK \(1 routes, 2 workers\)/);
    assert.match(first.stderr, /laid out under .* only: nothing enabled or started/);
    const entries = tree(root);
    const current = entries.get('opt/xml-amqp-bridge/current');
    assert.equal(current?.type, 'l');
    const id = /^releases\/(.+)$/.exec(current.target ?? '')?.[1] ?? '';
    assert.match(id, new RegExp(`^${PACKAGE.version.replaceAll('.', '\\.')}-[0-9a-f]{12}$`));
    const rel = `opt/xml-amqp-bridge/releases/${id}`;

    const expected: Record<string, string> = {
      etc: 'd',
      'etc/xml-amqp-bridge': 'd 755',
      'etc/xml-amqp-bridge/config.yaml': 'f 644',
      'etc/xml-amqp-bridge/credentials': 'd 700',
      'etc/xml-amqp-bridge/credentials/amqp-url': 'f 600',
      'etc/systemd': 'd',
      'etc/systemd/system': 'd',
      [`etc/systemd/system/${MAIN_UNIT}`]: 'f 644',
      [`etc/systemd/system/${HANDOVER_UNIT}`]: 'f 644',
      'etc/sysctl.d': 'd',
      [SYSCTL]: 'f 644',
      opt: 'd',
      'opt/xml-amqp-bridge': 'd 755',
      'opt/xml-amqp-bridge/releases': 'd 755',
      'opt/xml-amqp-bridge/current': 'l',
      [rel]: 'd 755',
    };
    const outside = [...entries]
      .filter(([p]) => !p.startsWith(`${rel}/`))
      .map(([p, e]) => [p, expected[p]?.includes(' ') ? `${e.type} ${e.mode}` : e.type]);
    assert.deepEqual(Object.fromEntries(outside), expected);

    const modeOf = (p: string): string | undefined => entries.get(`${rel}/${p}`)?.mode;
    assert.equal(modeOf('dist/src/primary/main.js'), '755');
    assert.equal(modeOf('dist/src/worker/main.js'), '644');
    for (const script of ['install.sh', 'upgrade.sh', 'reload.sh'])
      assert.equal(modeOf(`deploy/${script}`), '755', script);
    for (const file of [
      'deploy/lib.sh',
      'deploy/config.yaml',
      `deploy/${MAIN_UNIT}`,
      'package.json',
      'package-lock.json',
    ]) {
      assert.equal(modeOf(file), '644', file);
    }
    assert.equal(entries.has(`${rel}/dist/test`), false, 'tests were installed');
    for (const name of Object.keys(PACKAGE.dependencies))
      assert.ok(
        entries.has(`${rel}/node_modules/${name}/package.json`),
        `dependency ${name} missing`,
      );
    for (const name of Object.keys(PACKAGE.devDependencies))
      assert.equal(
        entries.has(`${rel}/node_modules/${name}`),
        false,
        `devDependency ${name} installed`,
      );
    const writable = [...entries]
      .filter(([, e]) => e.type !== 'l' && (parseInt(e.mode, 8) & 0o022) !== 0)
      .map(([p]) => p);
    assert.deepEqual(writable, [], 'group- or world-writable paths');
    if (process.getuid?.() === 0)
      assert.deepEqual(
        [...entries].filter(([, e]) => e.uid !== 0).map(([p]) => p),
        [],
        'paths not owned by root',
      );

    const etc = (p: string): string => readFileSync(path.join(root, 'etc', p), 'utf8');
    assert.equal(
      etc('xml-amqp-bridge/config.yaml'),
      readFileSync(path.join(DEPLOY, 'config.yaml'), 'utf8'),
    );
    assert.equal(
      etc('xml-amqp-bridge/credentials/amqp-url'),
      'amqp://guest:guest@127.0.0.1:5672/\n',
    );
    for (const unit of [MAIN_UNIT, HANDOVER_UNIT]) {
      assert.equal(
        etc(`systemd/system/${unit}`),
        unitText(unit).replace(/^(Exec\w*=)\/usr\/bin\/node /gm, `$1${NODE} `),
        unit,
      );
    }
    assert.equal(
      etc('sysctl.d/90-xml-amqp-bridge.conf'),
      readFileSync(path.join(DEPLOY, 'sysctl', '90-xml-amqp-bridge.conf'), 'utf8'),
    );

    const second = await run([INSTALL_SH, '--root', root]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`release ${id} is already laid out`));
    assert.match(second.stderr, /kept the existing \/etc\/xml-amqp-bridge\/config\.yaml/);
    assert.doesNotMatch(second.stderr, /installed \/etc\/systemd/);
    assert.deepEqual(tree(root), entries, 'the second run changed the tree');
  });

  it('--uninstall removes everything but the config and credentials, --uninstall --purge removes those too', async (t) => {
    const root = tempDir(t, 'uninstall');
    assert.equal((await run([INSTALL_SH, '--root', root])).code, 0);
    const files = (): string[] =>
      [...tree(root)]
        .filter(([, e]) => e.type !== 'd')
        .map(([p]) => p)
        .sort();
    const out = await run([INSTALL_SH, '--uninstall', '--root', root]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stderr,
      /kept \/etc\/xml-amqp-bridge \(config and credentials\); --uninstall --purge removes it/,
    );
    assert.deepEqual(files(), [
      'etc/xml-amqp-bridge/config.yaml',
      'etc/xml-amqp-bridge/credentials/amqp-url',
    ]);
    assert.equal(existsSync(path.join(root, 'opt', 'xml-amqp-bridge')), false);
    const purge = await run([INSTALL_SH, '--uninstall', '--purge', '--root', root]);
    assert.equal(purge.code, 0, purge.stderr);
    assert.deepEqual(files(), []);
    assert.equal(existsSync(path.join(root, 'etc', 'xml-amqp-bridge')), false);
  });

  it('keeps an existing config and credential; the installed release serves with production dependencies only', async (t) => {
    const broker = await openBroker();
    t.after(() => broker.close());
    const queue = await broker.queue(uniqueName('installed'));
    const root = tempDir(t, 'serve');
    const etc = path.join(root, 'etc', 'xml-amqp-bridge');
    mkdirSync(path.join(etc, 'credentials'), { recursive: true });
    const config = JSON.stringify({
      workers: 1,
      amqp: { urls: ['file:amqp-url'] },
      routes: [{ path: '/a', mode: 'publish', exchange: '', routingKey: queue }],
    });
    writeFileSync(path.join(etc, 'config.yaml'), config);
    const credential = 'amqp://guest:guest@localhost:5672/\n';
    writeFileSync(path.join(etc, 'credentials', 'amqp-url'), credential, { mode: 0o644 });

    const out = await run([INSTALL_SH, '--root', root]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(readFileSync(path.join(etc, 'config.yaml'), 'utf8'), config);
    assert.equal(readFileSync(path.join(etc, 'credentials', 'amqp-url'), 'utf8'), credential);
    assert.equal(
      (lstatSync(path.join(etc, 'credentials', 'amqp-url')).mode & 0o777).toString(8),
      '600',
      'the credential mode was not tightened',
    );

    const mainJs = path.join(
      root,
      'opt',
      'xml-amqp-bridge',
      'current',
      'dist',
      'src',
      'primary',
      'main.js',
    );
    const bridge = await startInstalled(mainJs, path.join(etc, 'config.yaml'), {
      CREDENTIALS_DIRECTORY: path.join(etc, 'credentials'),
    });
    t.after(() => bridge.child.stop(2000));
    await waitUntil(
      'the installed bridge /readyz 200',
      async () => (await fetch(`http://127.0.0.1:${bridge.adminPort}/readyz`)).status,
      (status) => status === 200,
      { timeoutMs: 20_000 },
    );
    const key = uniqueName('installed');
    const answer = await postXml(`http://127.0.0.1:${bridge.port}/a`, xmlBody(1), key);
    assert.equal(answer.status, 202);
    assert.deepEqual(messageIds(await broker.drain(queue)), [key]);
    await bridge.child.stop();
    assert.deepEqual(await bridge.child.exited, { code: 0, signal: null });
    const logText = bridge.logs.map((l) => JSON.stringify(l)).join('\n');
    assert.match(
      logText,
      /guest:\*\*\*@localhost/,
      'the startup line names the broker, password redacted',
    );
    assert.ok(!logText.includes('guest:guest@'), 'a log line carries the AMQP password');
  });

  it('refuses a config the release rejects, with the problem and its path, and switches nothing', async (t) => {
    const root = tempDir(t, 'badconfig');
    const etc = path.join(root, 'etc', 'xml-amqp-bridge');
    mkdirSync(etc, { recursive: true });
    writeFileSync(
      path.join(etc, 'config.yaml'),
      JSON.stringify({
        amqp: { urls: ['file:broker'] },
        routes: [{ path: '/a', mode: 'publish', routingKey: 'a' }],
      }),
    );
    const out = await run([INSTALL_SH, '--root', root]);
    assert.equal(out.code, 1, out.stderr);
    assert.match(
      out.stderr,
      new RegExp(
        `amqp\\.urls\\[0\\]: cannot read secret file ${etc}/credentials/broker \\(ENOENT\\)`,
      ),
    );
    assert.match(
      out.stderr,
      /refuses \/etc\/xml-amqp-bridge\/config\.yaml .*nothing was started or switched/,
    );
    assert.equal(existsSync(path.join(root, 'opt', 'xml-amqp-bridge', 'current')), false);
  });

  it('where systemd runs: enables and starts, then switches a new build through the handover unit (systemctl stubbed)', async (t) => {
    // A private mount namespace with overlays on /etc, /opt, /run and dist/: install.sh runs as on
    // a real host (systemd "running"), writing nowhere outside the test's directory.
    const dir = tempDir(t, 'systemd');
    for (const d of [
      'bin',
      'state',
      'etc-up',
      'etc-work',
      'opt-up',
      'opt-work',
      'run-up',
      'run-work',
      'dist-up',
      'dist-work',
    ])
      mkdirSync(path.join(dir, d));
    const calls = path.join(dir, 'calls.log');
    writeFileSync(
      path.join(dir, 'bin', 'systemctl'),
      [
        '#!/bin/bash',
        `state=${dir}/state`,
        'line="systemctl $*"',
        'if [ "$1 $2" = "start xml-amqp-bridge.service" ] && [ -e /run/xml-amqp-bridge-takeover.env ]; then line="$line [$(cat /run/xml-amqp-bridge-takeover.env)]"; fi',
        `echo "$line" >> ${calls}`,
        'case $1 in',
        '  is-active) [ -e "$state/$3" ] ;;',
        '  start) touch "$state/$2" ;;',
        '  stop) rm -f "$state/$2" ;;',
        '  disable) rm -f "$state/$3" ;;',
        'esac',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    writeFileSync(path.join(dir, 'bin', 'sysctl'), `#!/bin/sh\necho "sysctl $*" >> ${calls}\n`, {
      mode: 0o755,
    });
    const overlay = (target: string, name: string): string =>
      `mount -t overlay overlay -o lowerdir=${target},upperdir=${dir}/${name}-up,workdir=${dir}/${name}-work ${target}`;
    const script = [
      'set -e',
      overlay('/etc', 'etc'),
      overlay('/opt', 'opt'),
      overlay('/run', 'run'),
      overlay(path.join(PROJECT_ROOT, 'dist'), 'dist'),
      'mkdir -p /run/systemd/system',
      `export PATH=${dir}/bin:$PATH`,
      `cd ${PROJECT_ROOT}`,
      'deploy/install.sh',
      'first=$(readlink /opt/xml-amqp-bridge/current)',
      "echo '// another build' > dist/src/zz-another-build.js",
      'deploy/install.sh',
      `printf '%s\\n%s\\n' "$first" "$(readlink /opt/xml-amqp-bridge/current)" > ${dir}/current.txt`,
      `test ! -e /run/xml-amqp-bridge-takeover.env && test ! -e /opt/xml-amqp-bridge/next && echo clean > ${dir}/leftovers.txt`,
      'deploy/install.sh --uninstall --purge',
      `ls -A /opt > ${dir}/opt-after.txt`,
    ].join('\n');
    const out = await run([
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '/bin/bash',
      '-c',
      script,
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(readFileSync(calls, 'utf8').trim().split('\n'), [
      // first install
      'systemctl daemon-reload',
      'sysctl -p /etc/sysctl.d/90-xml-amqp-bridge.conf',
      `systemctl enable ${MAIN_UNIT}`,
      `systemctl is-active --quiet ${MAIN_UNIT}`,
      `systemctl start ${MAIN_UNIT}`,
      // a new build over the running service: the handover instance serves while the main unit restarts
      'systemctl daemon-reload',
      'sysctl -p /etc/sysctl.d/90-xml-amqp-bridge.conf',
      `systemctl enable ${MAIN_UNIT}`,
      `systemctl is-active --quiet ${MAIN_UNIT}`,
      `systemctl is-active --quiet ${MAIN_UNIT}`,
      `systemctl start ${HANDOVER_UNIT}`,
      `systemctl stop ${MAIN_UNIT}`,
      `systemctl start ${MAIN_UNIT} [BRIDGE_TAKEOVER=--takeover]`,
      `systemctl stop ${HANDOVER_UNIT}`,
      // --uninstall
      `systemctl disable --now ${MAIN_UNIT}`,
      `systemctl stop ${HANDOVER_UNIT}`,
      'systemctl daemon-reload',
    ]);
    assert.match(out.stderr, /switching to \S+ without downtime/);
    const [first, second] = readFileSync(path.join(dir, 'current.txt'), 'utf8').trim().split('\n');
    assert.match(first ?? '', /^releases\/\S+$/);
    assert.match(second ?? '', /^releases\/\S+$/);
    assert.notEqual(first, second, 'current was not switched to the new build');
    assert.equal(
      readFileSync(path.join(dir, 'leftovers.txt'), 'utf8'),
      'clean\n',
      'the takeover env file or the next symlink was left behind',
    );
    assert.equal(
      readFileSync(path.join(dir, 'opt-after.txt'), 'utf8').includes('xml-amqp-bridge'),
      false,
    );
    assert.equal(
      existsSync(path.join(PROJECT_ROOT, 'dist', 'src', 'zz-another-build.js')),
      false,
      'the overlay leaked',
    );
  });

  it('lists every missing prerequisite at once: a Node.js outside engines, no built release', async (t) => {
    const dir = tempDir(t, 'missing');
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(path.join(bin, 'node'), '#!/bin/sh\necho v18.19.0\n', { mode: 0o755 });
    const empty = path.join(dir, 'checkout');
    mkdirSync(empty);
    const out = await run([INSTALL_SH, '--root', path.join(dir, 'root'), '--from', empty], {
      PATH: `${bin}:/usr/bin:/bin`,
    });
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, /cannot install; missing:/);
    assert.match(
      out.stderr,
      /- Node\.js: \S+\/node is v18\.19\.0; the bridge runs on 20, 22 or 24/,
    );
    assert.match(
      out.stderr,
      /- a built release: \S+\/dist\/src\/primary\/main\.js is missing \(run 'npm ci && npm run build'/,
    );
    assert.match(out.stderr, /- package\.json and package-lock\.json in /);
    assert.equal(existsSync(path.join(dir, 'root')), false, 'something was laid out');
  });

  it('refuses a Node.js on which no uWebSockets.js build loads here, saying why (Node.js 24 on Debian 12)', async (t) => {
    const dir = tempDir(t, 'no-build');
    const node24 = path.join(await debian13Root(), 'opt', 'node-24', 'bin', 'node');
    const out = await run([INSTALL_SH, '--root', path.join(dir, 'root'), '--node', node24]);
    assert.equal(out.code, 1, out.stderr);
    assert.match(
      out.stderr,
      /- a uWebSockets\.js build for v24\.\S+ on this host: 20\.57: its binary needs glibc 2\.38; this host has 2\.36; 20\.30: it has no binary for Node\.js 24/,
    );
    assert.equal(existsSync(path.join(dir, 'root')), false, 'something was laid out');
  });

  it('the sysctl drop-in names only settings this kernel has', () => {
    const keys = readFileSync(path.join(DEPLOY, 'sysctl', '90-xml-amqp-bridge.conf'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
      .map((l) => (l.split('=')[0] ?? '').trim());
    assert.ok(
      keys.includes('net.ipv4.tcp_migrate_req') && keys.includes('net.core.somaxconn'),
      keys.join(' '),
    );
    for (const key of keys)
      assert.ok(existsSync(`/proc/sys/${key.replaceAll('.', '/')}`), `${key} does not exist here`);
  });
});

describe('deploy/reload.sh (ExecReload)', { timeout: 60_000 }, () => {
  it('SIGHUPs the primary and returns once every worker was replaced and /readyz says 200', async (t) => {
    const bridge = await startBridge(
      baseConfig([{ path: '/a', mode: 'publish', exchange: '', routingKey: uniqueName('unused') }]),
    );
    t.after(() => bridge.stop());
    const before = await workerPids(bridge);
    const out = await run([RELOAD_SH, String(bridge.pid)], {
      BRIDGE_ADMIN_LISTEN: `127.0.0.1:${bridge.adminPort}`,
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stderr, /reloaded: workers \d+ \d+ replaced by \d+ \d+ in \d+ ms/);
    const after = await workerPids(bridge);
    assert.equal(after.length, before.length);
    assert.deepEqual(
      after.filter((p) => before.includes(p)),
      [],
    );
    assert.equal((await fetch(`${bridge.adminUrl}/readyz`)).status, 200);
    await bridge.waitForLog((l) => l.msg === 'reloaded');
  });

  it('fails when no roll happens (the primary refused the new config) instead of reporting success', async (t) => {
    const config = baseConfig([
      { path: '/a', mode: 'publish', exchange: '', routingKey: uniqueName('unused') },
    ]);
    const bridge = await startBridge(config);
    t.after(() => bridge.stop());
    bridge.rewriteConfig({ ...config, workers: 'many' });
    const out = await run([RELOAD_SH, String(bridge.pid)], {
      BRIDGE_ADMIN_LISTEN: `127.0.0.1:${bridge.adminPort}`,
      BRIDGE_RELOAD_TIMEOUT: '3',
    });
    assert.equal(out.code, 1, out.stderr);
    assert.match(out.stderr, /the roll did not complete within 3s/);
    await bridge.waitForLog(
      (l) => l.msg === 'reload refused: invalid config; keeping the running one',
    );
    await waitUntilReady(bridge);
  });
});
