/** A private network namespace for part of a test (own loopback, own net sysctls), reaching the shared broker through a unix socket relay. */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runToExit, spawnChild, type Run, type RunOptions } from './child.js';
import type { Runtime } from './runtime.js';

export interface Relay {
  /** Connections relayed so far. */
  readonly relayed: () => number;
  close(): Promise<void>;
}

function pipeBoth(a: Socket, b: Socket, live: Set<Socket>): void {
  live.add(a);
  live.add(b);
  const drop = (): void => {
    a.destroy();
    b.destroy();
    live.delete(a);
    live.delete(b);
  };
  a.on('error', drop);
  b.on('error', drop);
  a.on('close', drop);
  b.on('close', drop);
  a.pipe(b);
  b.pipe(a);
}

async function relay(listen: (server: Server) => void, dial: () => Socket): Promise<Relay> {
  const live = new Set<Socket>();
  let relayed = 0;
  const server = createServer((incoming) => {
    relayed += 1;
    pipeBoth(incoming, dial(), live);
  });
  listen(server);
  await once(server, 'listening');
  return {
    relayed: () => relayed,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of live) s.destroy();
      await closed;
    },
  };
}

/** In the test's own namespace: a unix socket at `path` whose connections go to host:port. */
export function unixToTcp(path: string, port: number, host = '127.0.0.1'): Promise<Relay> {
  return relay(
    (server) => server.listen(path),
    () => connect(port, host),
  );
}

/** Inside the private namespace: 127.0.0.1:port whose connections go to the unix socket at `path`. */
export function tcpToUnix(port: number, path: string): Promise<Relay> {
  return relay(
    (server) => server.listen(port, '127.0.0.1'),
    () => connect(path),
  );
}

export interface NetnsOptions {
  /**
   * Extra addresses for the namespace's lo, e.g. `203.0.113.5/32` or `2001:db8::5/128`, so that
   * clients inside can connect from them (curl --interface). IPv6 ones are added `nodad`: usable
   * at once, with no duplicate address detection to wait for. Needs `ip` (iproute2).
   */
  readonly addresses?: readonly string[];
}

const LO_ADDRESS = /^[0-9a-fA-F:.]+\/\d{1,3}$/;

/**
 * The argv prefix that runs a command in a new network namespace with the loopback up and the
 * given per-namespace sysctls (e.g. `net/ipv4/tcp_migrate_req=1`) set there only. Needs root.
 * `ip` (iproute2) brings lo up, or python3's ioctl where iproute2 is not installed.
 */
export function netnsArgv(sysctls: readonly string[], options: NetnsOptions = {}): string[] {
  const loUp =
    'ip link set lo up 2>/dev/null || /usr/bin/python3 -c "' +
    'import socket,fcntl,struct;s=socket.socket();' +
    "r=fcntl.ioctl(s,0x8913,struct.pack('16sH14x',b'lo',0));f=struct.unpack('16sH',r[:18])[1];" +
    "fcntl.ioctl(s,0x8914,struct.pack('16sH14x',b'lo',f|1))\"";
  const sets = sysctls.map((kv) => {
    const [key, value] = kv.split('=');
    if (key === undefined || value === undefined || !/^net\/[a-z0-9_/]+$/.test(key))
      throw new TypeError(`bad sysctl ${kv}`);
    // only keys under /proc/sys/net: they belong to the new namespace, never to the host
    return `echo '${value}' > /proc/sys/${key}`;
  });
  const addresses = (options.addresses ?? []).map((cidr) => {
    if (!LO_ADDRESS.test(cidr)) throw new TypeError(`bad address ${cidr}`);
    return cidr.includes(':')
      ? `ip -6 addr add ${cidr} dev lo nodad`
      : `ip addr add ${cidr} dev lo`;
  });
  const script = ['set -e', loUp, ...sets, ...addresses, 'exec "$@"'].join('\n');
  return ['unshare', '--net', '--fork', '--kill-child', '--', '/bin/sh', '-c', script, 'netns'];
}

const HOLDER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'netns-holder.js');

/** A private network namespace held open by netns-holder.js, with the shared broker on 127.0.0.1:5672 inside. */
export interface Netns {
  /** A process in the namespace (the holder): /proc/PID/ns/net names it. */
  readonly pid: number;
  /** The argv prefix that runs a command inside the namespace (nsenter: the command keeps its PID). */
  readonly enter: readonly string[];
  /** `base` (e.g. the host's Node.js) run inside the namespace, for startBridge. */
  runtime(base: Runtime): Runtime;
  /** Runs `argv` inside the namespace to its exit. */
  run(argv: readonly string[], options?: RunOptions): Promise<Run>;
  /** Stops the holder and the relay; stop what you started inside first. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a namespace (netnsArgv: lo up, `sysctls`, `options.addresses`) whose 127.0.0.1:5672
 * leads to the shared broker, and which outlives its commands: processes join it with `enter`.
 */
export async function startNetns(
  sysctls: readonly string[] = [],
  options: NetnsOptions = {},
): Promise<Netns> {
  const dir = mkdtempSync(path.join(tmpdir(), 'netns-'));
  const socket = path.join(dir, 'amqp.sock');
  const outer = await unixToTcp(socket, 5672);
  const [cmd = 'unshare', ...args] = [
    ...netnsArgv(sysctls, options),
    process.execPath,
    HOLDER,
    socket,
  ];
  const holder = spawnChild(cmd, args, {
    name: 'the network namespace holder',
    parse: (raw) => {
      try {
        return JSON.parse(raw) as { type?: unknown; pid?: unknown }; // netns-holder.ts' one line
      } catch {
        return { type: raw };
      }
    },
    killAfterMs: 5000,
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      // SIGTERM to unshare ends it; --kill-child then SIGKILLs the holder (unshare forwards no signal).
      await holder.stop();
      await outer.close();
      rmSync(dir, { recursive: true, force: true });
    })());
  let pid: number;
  try {
    const ready = await holder.waitForLine((l) => l.type === 'ready', 15_000);
    if (typeof ready.pid !== 'number') throw new Error(`holder said ${JSON.stringify(ready)}`);
    pid = ready.pid;
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${holder.output()}`, { cause: err });
  }
  const enter = ['nsenter', `--net=/proc/${pid}/ns/net`, '--'];
  return {
    pid,
    enter,
    runtime: (base) => ({
      name: `${base.name} in a network namespace`,
      command: 'nsenter',
      prefix: [...enter.slice(1), base.command, ...base.prefix],
    }),
    run: (argv, runOptions) => runToExit('nsenter', [...enter.slice(1), ...argv], runOptions),
    stop,
  };
}
