/** Runs Debian's `promtool` and a private, throw-away `prometheus` server (own port, own TSDB dir) for the metrics e2e tests. */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { asText, runToExit, spawnChild, type Run } from './child.js';
import { poll } from './poll.js';
import { freePort } from './free-port.js';

/** `promtool ...args`, with `stdin` piped in; never rejects on a non-zero exit (the caller asserts). */
export function promtool(args: readonly string[], stdin?: string): Promise<Run> {
  return runToExit('promtool', args, {
    ...(stdin === undefined ? {} : { stdin }),
    timeoutMs: 60_000,
  });
}

export interface RunningPrometheus {
  readonly url: string;
  readonly child: ChildProcess;
  /** GET /api/v1/<apiPath> and return `data` (throws unless status is success). */
  api(apiPath: string): Promise<unknown>;
  /** Instant query; each result's labels and value. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>>;
  /** SIGTERM, wait for the exit (SIGKILL after 10 s), remove the data dir. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `prometheus` with `configYaml` (written to a temp dir: name rule files by absolute path)
 * and resolves once /-/ready answers.
 */
export async function startPrometheus(
  configYaml: string,
  readyTimeoutMs = 20_000,
): Promise<RunningPrometheus> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bridge-prom-'));
  const configFile = path.join(dir, 'prometheus.yml');
  writeFileSync(configFile, configYaml);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawnChild(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { name: 'prometheus', parse: asText },
  );
  let exited = false;
  void child.exited.then(() => (exited = true));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= child.stop().then(() => rmSync(dir, { recursive: true, force: true })));

  const api = async (apiPath: string): Promise<unknown> => {
    const res = await fetch(`${url}/api/v1/${apiPath}`);
    const body: unknown = await res.json();
    const ok =
      typeof body === 'object' &&
      body !== null &&
      'status' in body &&
      body.status === 'success' &&
      'data' in body;
    if (!ok) throw new Error(`prometheus ${apiPath}: ${res.status} ${JSON.stringify(body)}`);
    return body.data;
  };
  const query = async (
    expr: string,
  ): Promise<Array<{ metric: Record<string, string>; value: number }>> => {
    const data = await api(`query?query=${encodeURIComponent(expr)}`);
    const result =
      typeof data === 'object' && data !== null && 'result' in data && Array.isArray(data.result)
        ? data.result
        : [];
    return result.map((r: unknown) => {
      const metric = typeof r === 'object' && r !== null && 'metric' in r ? r.metric : {};
      const value =
        typeof r === 'object' && r !== null && 'value' in r && Array.isArray(r.value)
          ? Number(r.value[1])
          : NaN;
      return { metric: metric as Record<string, string>, value }; // the API's instant-vector shape: label name → value
    });
  };

  const ready = await poll(
    async () =>
      exited ? 'exited' : (await fetch(`${url}/-/ready`)).status === 200 ? 'ready' : 'starting',
    (state) => state !== 'starting',
    { timeoutMs: readyTimeoutMs, intervalMs: 100 },
  );
  if (ready.last !== 'ready') {
    await stop();
    const why =
      ready.last === 'exited'
        ? 'exited before it was ready'
        : `not ready after ${readyTimeoutMs} ms`;
    throw new Error(`prometheus ${why}: ${child.stderr().slice(-4000)}`);
  }
  return { url, child: child.process, api, query, stop };
}
