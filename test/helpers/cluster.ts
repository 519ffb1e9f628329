/**
 * A 3-node RabbitMQ cluster of the test's own: three private nodes (private-broker.ts: their own
 * node names, AMQP and distribution ports, data directories) sharing one Erlang cookie, nodes 2
 * and 3 joined to node 1 with `rabbitmqctl join_cluster`. Every node is stopped by its PID; the
 * shared broker on 5672 and anything else not started here is never touched.
 * Takes about 15 s to form on the 2-core VM (the three boots run side by side).
 */
import { alive } from './pids.js';
import { waitUntil } from './poll.js';
import { newCookie, startPrivateBroker, type PrivateBroker } from './private-broker.js';

export interface ClusterNode {
  /** 1, 2 or 3. */
  readonly index: number;
  /** The Erlang node name, e.g. `bridgetest-1a2b3c4d@localhost`. */
  readonly name: string;
  readonly port: number;
  readonly url: string;
  /** The OS PID of its Erlang VM (a new one after a restart; -1 while it is down). */
  readonly pid: number;
  readonly up: boolean;
  readonly broker: PrivateBroker;
  /** rabbitmqctl against this node. */
  ctl(...args: string[]): Promise<string>;
  /** SIGKILL of its VM; resolves once the process is gone. */
  kill(): Promise<void>;
  /** Graceful stop by PID (SIGTERM); resolves once the process is gone. */
  stop(): Promise<void>;
  /** Boots it again on the same ports and data directory: it rejoins the cluster by itself. */
  start(): Promise<void>;
  /** `stop()` (or nothing if it is down), then `start()`. */
  restart(): Promise<void>;
}

export interface QuorumStatus {
  /** Erlang node name of the leader. */
  readonly leader: string;
  /** Erlang node names of the members that are online. */
  readonly online: readonly string[];
  readonly members: readonly string[];
}

export interface Cluster {
  readonly nodes: readonly [ClusterNode, ClusterNode, ClusterNode];
  readonly urls: readonly string[];
  /** The node of an Erlang node name, or of an AMQP port. */
  nodeNamed(name: string): ClusterNode | undefined;
  nodeOnPort(port: number): ClusterNode | undefined;
  /** A node that is up (for rabbitmqctl), preferring those not in `avoid`. */
  anyUp(avoid?: readonly ClusterNode[]): ClusterNode;
  /** The running cluster members as node 1 sees them (`cluster_status`). */
  runningNodes(): Promise<string[]>;
  /** Leader and members of a quorum queue, asked of a node that is up. */
  quorumStatus(queue: string): Promise<QuorumStatus>;
  /**
   * The client connections the cluster holds, by the node they are on (the server-side port
   * they connected to) and their `connection_name` (`xml-amqp-bridge worker N pid P`).
   */
  connections(): Promise<Array<{ node: ClusterNode | undefined; name: string }>>;
  /** Resolves once every node is up and a cluster member again. */
  waitFormed(timeoutMs?: number): Promise<void>;
  /** Stops every node by PID and deletes their directories; idempotent. */
  stop(): Promise<void>;
}

/** rabbitmqctl's `--formatter json` output: the JSON array it prints (a banner line may precede it). */
function parseJsonOutput(out: string): unknown {
  const start = out.indexOf('[');
  const startObj = out.indexOf('{');
  const from = start === -1 ? startObj : startObj === -1 ? start : Math.min(start, startObj);
  if (from === -1) throw new Error(`no JSON in rabbitmqctl output: ${out.slice(0, 200)}`);
  return JSON.parse(out.slice(from));
}

/** `connection_name` from client_properties as the JSON formatter gives them: `[[key, type, value], …]`. */
function connectionName(properties: unknown): string {
  if (!Array.isArray(properties)) return '';
  for (const entry of properties as unknown[])
    if (Array.isArray(entry) && entry[0] === 'connection_name' && typeof entry[2] === 'string')
      return entry[2];
  return '';
}

export async function startCluster(label: string): Promise<Cluster> {
  const cookie = newCookie();
  const started = await Promise.allSettled(
    [1, 2, 3].map((i) => startPrivateBroker(`${label}-n${i}`, { cookie })),
  );
  const brokers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stopAll = (): Promise<void> =>
    Promise.all(brokers.map((b) => b.stop())).then(() => undefined);
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) {
    await stopAll();
    throw failed.reason;
  }
  let stopping: Promise<void> | undefined;
  const nodes = brokers.map((broker, i): ClusterNode => {
    let up = true;
    const gone = (pid: number, what: string): Promise<unknown> =>
      waitUntil(
        `node ${i + 1} (${what}) to be gone`,
        () => alive(pid),
        (a) => !a,
        { timeoutMs: 30_000 },
      );
    const node: ClusterNode = {
      index: i + 1,
      name: broker.node,
      port: broker.port,
      url: broker.url,
      get pid() {
        return up ? broker.pid : -1;
      },
      get up() {
        return up;
      },
      broker,
      ctl: (...args) => broker.ctl(...args),
      kill: async () => {
        const pid = broker.pid;
        up = false;
        process.kill(pid, 'SIGKILL');
        await gone(pid, 'kill -9');
      },
      stop: async () => {
        const pid = broker.pid;
        up = false;
        await broker.halt();
        await gone(pid, 'stop');
      },
      start: async () => {
        if (stopping !== undefined) throw new Error('the cluster was stopped');
        await broker.restart();
        up = true;
      },
      restart: async () => {
        if (up) await node.stop();
        await node.start();
      },
    };
    return node;
  }) as unknown as [ClusterNode, ClusterNode, ClusterNode]; // three brokers, mapped in order

  const anyUp = (avoid: readonly ClusterNode[] = []): ClusterNode => {
    const pick = nodes.find((n) => n.up && !avoid.includes(n)) ?? nodes.find((n) => n.up);
    if (pick === undefined) throw new Error('no cluster node is up');
    return pick;
  };
  const runningNodes = async (): Promise<string[]> => {
    const out = await anyUp().ctl('cluster_status', '--formatter', 'json');
    const status = parseJsonOutput(out) as { running_nodes?: string[] }; // rabbitmqctl's JSON shape
    return status.running_nodes ?? [];
  };
  const waitFormed = async (timeoutMs = 60_000): Promise<void> => {
    await waitUntil(
      'all three nodes running in the cluster',
      runningNodes,
      (running) => nodes.every((n) => running.includes(n.name)),
      { timeoutMs, intervalMs: 250 },
    );
  };
  const cluster: Cluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    nodeNamed: (name) => nodes.find((n) => n.name === name),
    nodeOnPort: (port) => nodes.find((n) => n.port === port),
    anyUp,
    runningNodes,
    quorumStatus: async (queue) => {
      // `rabbitmq-queues quorum_status` needs the Ra system of the node it asks; list_queues
      // answers from any member, which is what a test with a node down needs.
      const out = await anyUp().ctl(
        'list_queues',
        '--formatter',
        'json',
        'name',
        'type',
        'leader',
        'members',
        'online',
      );
      const rows = parseJsonOutput(out) as Array<{
        name: string;
        leader?: string;
        members?: string[];
        online?: string[];
      }>; // rabbitmqctl's JSON shape
      const row = rows.find((r) => r.name === queue);
      if (row === undefined || typeof row.leader !== 'string' || row.leader === '')
        throw new Error(`no leader for ${queue} in ${JSON.stringify(row ?? rows.slice(0, 5))}`);
      return { leader: row.leader, members: row.members ?? [], online: row.online ?? [] };
    },
    connections: async () => {
      const out = await anyUp().ctl(
        'list_connections',
        '--formatter',
        'json',
        'port',
        'client_properties',
      );
      const rows = parseJsonOutput(out) as Array<{ port: number; client_properties?: unknown }>; // rabbitmqctl's JSON shape
      return rows.map((r) => ({
        node: nodes.find((n) => n.port === r.port),
        name: connectionName(r.client_properties),
      }));
    },
    waitFormed,
    stop: () => (stopping ??= stopAll()),
  };

  try {
    const [first, ...rest] = nodes;
    for (const node of rest) {
      await node.ctl('stop_app');
      await node.ctl('reset');
      // join_cluster can be refused for a moment while node 1 finishes booting: try again.
      await waitUntil(
        `node ${node.index} to join ${first.name}`,
        () => node.ctl('join_cluster', first.name),
        () => true,
        { timeoutMs: 30_000, intervalMs: 500 },
      );
      await node.ctl('start_app');
    }
    await waitFormed();
  } catch (err) {
    await cluster.stop();
    throw new Error(
      `the 3-node cluster did not form: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  return cluster;
}

/** Waits until `queue` has a leader on a node that is up and `want` members online. */
export async function waitForQuorum(
  cluster: Cluster,
  queue: string,
  want: number,
  timeoutMs = 30_000,
): Promise<QuorumStatus> {
  return waitUntil(
    `quorum queue ${queue} with a live leader and ${want} members online`,
    () => cluster.quorumStatus(queue),
    (s) => s.online.length >= want && cluster.nodeNamed(s.leader)?.up === true,
    { timeoutMs, intervalMs: 250 },
  );
}
