/** A private network namespace for part of a test (own loopback, own net sysctls), reaching the shared broker through a unix socket relay. */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

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

/**
 * The argv prefix that runs a command in a new network namespace with the loopback up and the
 * given per-namespace sysctls (e.g. `net/ipv4/tcp_migrate_req=1`) set there only. Needs root.
 * `ip` (iproute2) brings lo up, or python3's ioctl where iproute2 is not installed.
 */
export function netnsArgv(sysctls: readonly string[]): string[] {
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
  const script = ['set -e', loUp, ...sets, 'exec "$@"'].join('\n');
  return ['unshare', '--net', '--fork', '--kill-child', '--', '/bin/sh', '-c', script, 'netns'];
}
