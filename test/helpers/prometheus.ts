/** Runs Debian's `promtool` and a private, throw-away `prometheus` server (own port, own TSDB dir) for the metrics e2e tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface ToolRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `promtool ...args`, with `stdin` piped in; never rejects on a non-zero exit (the caller asserts). */
export async function promtool(args: readonly string[], stdin?: string): Promise<ToolRun> {
  const child = spawn('promtool', [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  const exited = once(child, 'close');
  child.stdin.end(stdin ?? '');
  const [code] = (await exited) as unknown[]; // once() resolves with the event's arguments
  return { code: typeof code === 'number' ? code : null, stdout, stderr };
}

/** A port nothing listens on right now (bound and released; good enough on loopback). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
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
export async function startPrometheus(configYaml: string, readyTimeoutMs = 20_000): Promise<RunningPrometheus> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bridge-prom-'));
  const configFile = path.join(dir, 'prometheus.yml');
  writeFileSync(configFile, configYaml);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    'prometheus',
    [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (t: string) => {
    stderr = (stderr + t).slice(-4000);
  });
  const exited = once(child, 'exit');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    })());

  const api = async (apiPath: string): Promise<unknown> => {
    const res = await fetch(`${url}/api/v1/${apiPath}`);
    const body: unknown = await res.json();
    const ok = typeof body === 'object' && body !== null && 'status' in body && body.status === 'success' && 'data' in body;
    if (!ok) throw new Error(`prometheus ${apiPath}: ${res.status} ${JSON.stringify(body)}`);
    return body.data;
  };
  const query = async (expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>> => {
    const data = await api(`query?query=${encodeURIComponent(expr)}`);
    const result = typeof data === 'object' && data !== null && 'result' in data && Array.isArray(data.result) ? data.result : [];
    return result.map((r: unknown) => {
      const metric = typeof r === 'object' && r !== null && 'metric' in r ? r.metric : {};
      const value = typeof r === 'object' && r !== null && 'value' in r && Array.isArray(r.value) ? Number(r.value[1]) : NaN;
      return { metric: metric as Record<string, string>, value }; // the API's instant-vector shape: label name → value
    });
  };

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`prometheus exited before it was ready: ${stderr}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready after ${readyTimeoutMs} ms: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100)); // polling an HTTP endpoint: no event to await
  }
  return { url, child, api, query, stop };
}
