/**
 * E2E: deploy/nginx/xml-amqp-bridge.conf, the shipped file itself, in private nginx instances
 * (Debian's /usr/sbin/nginx) terminating TLS in front of a real bridge: curl over HTTPS, the
 * partner's address and scheme in the AMQP message, keep-alive on both sides, partners the
 * bridge cannot serve itself (HTTP/1.0, pipelining), client certificates required and optional,
 * the bridge's own answers passed through unchanged, and no POST ever sent to the bridge twice.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import type { GetMessage } from 'amqplib';
import {
  PROJECT_ROOT,
  baseConfig,
  startBridge,
  waitUntilReady,
  workerPids,
  type RunningBridge,
} from '../helpers/bridge.js';
import { messageIds, openBroker, uniqueName, type TestBroker } from '../helpers/broker.js';
import { asText, runToExit, spawnChild, type Child } from '../helpers/child.js';
import { freePort } from '../helpers/free-port.js';
import { metricValue } from '../helpers/metrics.js';
import { waitUntil } from '../helpers/poll.js';
import {
  assertProblem,
  assertRequestId,
  assertRetryAfter,
  header,
  type Reply,
} from '../helpers/publish-http.js';
import { openRaw, rawPost } from '../helpers/raw-http.js';
import { makeTestPki, type TestPki } from '../helpers/test-pki.js';

const NGINX = '/usr/sbin/nginx';
const SITE_FILE = path.join(PROJECT_ROOT, 'deploy', 'nginx', 'xml-amqp-bridge.conf');
const FORWARDED = ['x-forwarded-for', 'x-forwarded-proto', 'x-real-ip', 'x-client-subject'];
const ORDER =
  '<?xml version="1.0" encoding="UTF-8"?>\n' +
  '<ord:order xmlns:ord="urn:example:orders" id="A-1">' +
  '<ord:note><![CDATA[价格 < 100 & "引号"]]></ord:note><ord:city>上海</ord:city></ord:order>';
/** Far longer than any test waits: the rpc request is cut by killing its worker, never by this. */
const RPC_TIMEOUT_MS = 60_000;
/** An rpc route that gives up (504) well within nginx's proxy_read_timeout. */
const SHORT_RPC_TIMEOUT_MS = 1000;

/**
 * ssl_verify_client as the shipped file leaves it (off), or its `#mtls# ` lines enabled with
 * `on` as shipped or another value.
 */
type ClientCerts = 'off' | 'on' | 'optional' | 'optional_no_ca';

interface PrivateNginx {
  readonly port: number;
  readonly url: string;
  readonly child: Child<string>;
  /** The site's access log (the shipped log_format) so far. */
  accessLog(): string;
  /** Its error logs and output so far, for assertion messages. */
  errors(): string;
  stop(): Promise<void>;
}

/** An active (uncommented) `directive` on one line: its lead-in, then its arguments. */
const directiveLine = (directive: string): RegExp =>
  new RegExp(`^([ \\t]*${directive}[ \\t]+)([^;{\\n]*);`, 'gm');

/**
 * Replaces the arguments of the one active `directive` in the site file; the shipped file
 * promises one per line (see its header), and a second or a missing one fails here rather than
 * testing something else.
 */
function editDirective(conf: string, directive: string, edit: (args: string) => string): string {
  let found = 0;
  const out = conf.replace(directiveLine(directive), (_all, head: string, args: string) => {
    found++;
    return `${head}${edit(args)};`;
  });
  assert.equal(found, 1, `${SITE_FILE}: one active "${directive}" directive, found ${found}`);
  return out;
}

/** The arguments of the one active `directive` in the site file. */
function directiveArgs(conf: string, directive: string): string {
  const found = [...conf.matchAll(directiveLine(directive))];
  assert.equal(found.length, 1, `${SITE_FILE}: one active "${directive}" directive`);
  return found[0]![2]!;
}

/** An nginx size (`1m`, `512k`, `1048576`) in bytes. */
function nginxSize(value: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(value);
  assert.ok(m, `an nginx size: ${value}`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase()];
  return Number(m[1]) * (unit ?? NaN);
}

/** The first argument (an address or a path) replaced, the rest (`ssl`, a log format) kept. */
const firstArg = (value: string) => (args: string) => args.replace(/^\S+/, value);

/** The shipped site file with only addresses and paths changed, and mutual TLS as asked. */
function siteConfig(
  shipped: string,
  o: { port: number; upstreamPort: number; pki: TestPki; dir: string; clientCerts: ClientCerts },
): string {
  let conf = shipped;
  conf = editDirective(conf, 'listen', (args) => {
    assert.match(args, /^443 ssl\b/, 'the shipped file listens on 443 with TLS');
    return args.replace(/^\S+/, `127.0.0.1:${o.port}`);
  });
  conf = editDirective(conf, 'server', firstArg(`127.0.0.1:${o.upstreamPort}`));
  conf = editDirective(conf, 'ssl_certificate', firstArg(o.pki.serverCert));
  conf = editDirective(conf, 'ssl_certificate_key', firstArg(o.pki.serverKey));
  conf = editDirective(conf, 'access_log', firstArg(path.join(o.dir, 'access.log')));
  conf = editDirective(conf, 'error_log', firstArg(path.join(o.dir, 'site-error.log')));
  assert.doesNotMatch(
    conf,
    /^[ \t]*ssl_verify_client\b/m,
    'client certificates are off as shipped',
  );
  if (o.clientCerts === 'off') return conf;
  const enabled = conf.replace(/^([ \t]*)#mtls# /gm, '$1');
  assert.notEqual(enabled, conf, 'the shipped file has #mtls# lines');
  conf = editDirective(enabled, 'ssl_client_certificate', firstArg(o.pki.caCert));
  return editDirective(conf, 'ssl_verify_client', (args) => {
    assert.equal(args, 'on', 'the #mtls# lines require a certificate (clientCert: require)');
    return o.clientCerts;
  });
}

/**
 * The nginx.conf around the site: what Debian's /etc/nginx/nginx.conf sets in `http { }` where it
 * touches the site (its TLSv1/TLSv1.1 default, gzip), everything else under the private prefix.
 * One worker process, so a request takes the upstream connection the one before it left.
 */
function mainConfig(dir: string, site: string): string {
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((what) => `  ${what}_temp_path ${path.join(dir, what)};`)
    .join('\n');
  return `daemon off;
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} notice;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
  ssl_prefer_server_ciphers on;
  gzip on;
  access_log off;
${temp}
  include ${site};
}
`;
}

async function startNginx(
  upstreamPort: number,
  pki: TestPki,
  clientCerts: ClientCerts,
): Promise<PrivateNginx> {
  const dir = mkdtempSync(path.join(tmpdir(), 'nginx-test-'));
  // Its workers run as nobody (the master is root) and create their temp files in here.
  chmodSync(dir, 0o755);
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  let child: Child<string> | undefined;
  try {
    const port = await freePort();
    const site = path.join(dir, 'site.conf');
    const main = path.join(dir, 'nginx.conf');
    const shipped = readFileSync(SITE_FILE, 'utf8');
    writeFileSync(site, siteConfig(shipped, { port, upstreamPort, pki, dir, clientCerts }));
    writeFileSync(main, mainConfig(dir, site));
    const args = ['-p', `${dir}/`, '-c', main];
    const check = await runToExit(NGINX, [...args, '-t'], { timeoutMs: 20_000 });
    assert.equal(check.code, 0, `nginx -t (Debian package nginx): ${check.stderr}`);
    const master = spawnChild(NGINX, args, { name: 'nginx', parse: asText, killAfterMs: 5000 });
    child = master;
    const read = (file: string): string => {
      try {
        return readFileSync(path.join(dir, file), 'utf8');
      } catch {
        return '';
      }
    };
    // The master writes its pid file once its listening socket is open (nginx.c: after
    // ngx_init_cycle), so from then on connections queue until the worker accepts them.
    await waitUntil(
      'nginx pid file',
      () => {
        if (master.process.exitCode !== null) throw new Error(`nginx exited: ${master.output()}`);
        return read('nginx.pid').trim();
      },
      (pid) => pid === String(master.pid),
      { timeoutMs: 10_000 },
    );
    let stopping: Promise<void> | undefined;
    return {
      port,
      url: `https://127.0.0.1:${port}`,
      child: master,
      accessLog: () => read('access.log'),
      errors: () =>
        `error.log:\n${read('error.log')}\nsite-error.log:\n${read('site-error.log')}\n${master.output()}`,
      stop: () =>
        (stopping ??= (async () => {
          if (master.process.exitCode === null && master.process.signalCode === null) {
            // SIGQUIT to the master's PID: graceful shutdown of it and its worker; SIGTERM,
            // then SIGKILL, only if it is still there after 10 s.
            process.kill(master.pid, 'SIGQUIT');
            const timer = setTimeout(() => void master.stop(2000), 10_000);
            await master.exited;
            clearTimeout(timer);
          }
          removeDir();
        })()),
    };
  } catch (err) {
    await child?.stop(2000);
    removeDir();
    throw err;
  }
}

interface CurlTransfer {
  /** 0 when no HTTP answer came (e.g. the TLS handshake failed). */
  readonly status: number;
  /** New connections this transfer opened (0 = it reused the one before). */
  readonly connects: number;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly body: string;
}

interface CurlRun {
  readonly code: number | null;
  readonly stderr: string;
  readonly transfers: readonly CurlTransfer[];
}

const END_OF_TRANSFER = '--end-of-transfer--';

/** curl with `args`, one transfer per URL (in one invocation: one connection, kept alive). */
async function curl(
  ca: string,
  urls: readonly string[],
  args: readonly string[],
): Promise<CurlRun> {
  const dir = mkdtempSync(path.join(tmpdir(), 'curl-test-'));
  try {
    const outputs = urls.flatMap((url, i) => ['-o', path.join(dir, `body-${i}`), url]);
    const run = await runToExit(
      'curl',
      [
        '--silent',
        '--show-error',
        '--cacert',
        ca,
        '--write-out',
        `%{json}\n%{header_json}\n${END_OF_TRANSFER}\n`,
        ...args,
        ...outputs,
      ],
      { timeoutMs: 30_000 },
    );
    const transfers = run.stdout
      .split(`${END_OF_TRANSFER}\n`)
      .filter((part) => part.trim() !== '')
      .map((part, i): CurlTransfer => {
        const nl = part.indexOf('\n');
        // curl's own write-out JSON: %{json} on one line, then %{header_json}.
        const info = JSON.parse(part.slice(0, nl)) as { http_code: number; num_connects: number };
        const headers = JSON.parse(part.slice(nl + 1) || '{}') as Record<string, string[]>;
        let body = '';
        try {
          body = readFileSync(path.join(dir, `body-${i}`), 'utf8');
        } catch {
          // no body was written (no answer)
        }
        return { status: info.http_code, connects: info.num_connects, headers, body };
      });
    return { code: run.code, stderr: run.stderr, transfers };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The single transfer of a one-URL curl run. */
function only(run: CurlRun, what: string): CurlTransfer {
  assert.equal(run.transfers.length, 1, `${what}: one transfer; curl said ${run.stderr}`);
  return run.transfers[0]!;
}

/** A POST over HTTPS with node's client (full control over when the body is written). */
function httpsPost(
  url: string,
  options: RequestOptions & { readonly ca: Buffer },
): { req: ReturnType<typeof request>; response: Promise<Reply> } {
  let req: ReturnType<typeof request> | undefined;
  const response = new Promise<Reply>((resolve, reject) => {
    req = request(url, { method: 'POST', agent: false, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    req.on('error', reject);
  });
  response.catch(() => undefined); // the caller awaits it; no unhandled rejection meanwhile
  return { req: req!, response };
}

/** Established TCP connections on this host whose far end is `port` (IPv4 loopback). */
function connectionsTo(port: number): number[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[2]?.endsWith(`:${hexPort}`) && f[3] === '01') // 01 = ESTABLISHED
    .map((f) => parseInt(f[1]!.split(':')[1]!, 16));
}

describe('TLS through nginx (deploy/nginx/xml-amqp-bridge.conf)', { timeout: 120_000 }, () => {
  let broker: TestBroker;
  let pki: TestPki;
  let ca: Buffer;
  let bridge: RunningBridge;
  let queue: string;
  let rpcQueue: string;
  let tls: PrivateNginx;
  let requireCert: PrivateNginx;
  let optionalCert: PrivateNginx;
  let unverifiedCert: PrivateNginx;
  let scratch: string;
  let orderFile: string;
  /** The shipped client_max_body_size, the bridge's maxBodyBytes too (the file says why). */
  let bodyLimit: number;

  /** An XML POST through nginx with curl, trusting the test CA; `extra` (certificates, headers) goes first. */
  const curlPost = (url: string, body: string, extra: readonly string[] = []): Promise<CurlRun> =>
    curl(
      pki.caCert,
      [url],
      [...extra, '-H', 'Content-Type: application/xml', '--data-binary', body],
    );
  /** The same, for a POST that must get exactly one answer. */
  const postOne = async (
    url: string,
    body: string,
    what: string,
    extra: readonly string[] = [],
  ): Promise<CurlTransfer> => only(await curlPost(url, body, extra), what);

  before(async () => {
    broker = await openBroker();
    queue = await broker.queue(uniqueName('rproxy'));
    rpcQueue = await broker.queue(uniqueName('rproxy-rpc'));
    pki = await makeTestPki();
    ca = readFileSync(pki.caCert);
    scratch = mkdtempSync(path.join(tmpdir(), 'rproxy-test-'));
    orderFile = path.join(scratch, 'order.xml');
    writeFileSync(orderFile, ORDER);
    bodyLimit = nginxSize(directiveArgs(readFileSync(SITE_FILE, 'utf8'), 'client_max_body_size'));
    // One worker with one upload slot: a held upload makes the next request a 503, and the
    // worker to kill is known.
    bridge = await startBridge(
      baseConfig(
        [
          {
            path: '/orders',
            mode: 'publish',
            exchange: '',
            routingKey: queue,
            forwardHeaders: FORWARDED,
          },
          {
            path: '/rpc',
            mode: 'rpc',
            exchange: '',
            routingKey: rpcQueue,
            timeoutMs: RPC_TIMEOUT_MS,
          },
          {
            path: '/rpc-short',
            mode: 'rpc',
            exchange: '',
            routingKey: rpcQueue,
            timeoutMs: SHORT_RPC_TIMEOUT_MS,
          },
        ],
        { workers: 1, limits: { maxBodyBytes: bodyLimit, maxUploads: 1 } },
      ),
    );
    tls = await startNginx(bridge.port, pki, 'off');
    requireCert = await startNginx(bridge.port, pki, 'on');
    optionalCert = await startNginx(bridge.port, pki, 'optional');
    unverifiedCert = await startNginx(bridge.port, pki, 'optional_no_ca');
  });

  after(async () => {
    await tls?.stop();
    await requireCert?.stop();
    await optionalCert?.stop();
    await unverifiedCert?.stop();
    await bridge?.stop();
    await broker?.close();
    pki?.remove();
    if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  });

  async function takeExactly(n: number, q = queue, what = ''): Promise<GetMessage[]> {
    const got = await broker.drain(q);
    assert.equal(got.length, n, `${what}: expected ${n} message(s) in ${q}, found ${got.length}`);
    return got;
  }

  async function assertNothingPublished(what: string): Promise<void> {
    assert.equal(await broker.count(queue), 0, `${what}: nothing may be published`);
  }

  /** The first access-log line (the shipped log_format) that matches: written after the answer. */
  function accessLine(nginx: PrivateNginx, match: (line: string) => boolean): Promise<string> {
    return waitUntil(
      'the access log line',
      () => nginx.accessLog().split('\n').find(match),
      (line) => line !== undefined,
      { timeoutMs: 5000 },
    ) as Promise<string>; // accepted only when defined
  }

  it('curl POSTs XML over HTTPS: 202 from the bridge, the body byte for byte, the partner address and scheme in the message', async () => {
    const run = await curl(
      pki.caCert,
      [`${tls.url}/orders?src=curl`],
      [
        '-H',
        'Content-Type: application/xml; charset=utf-8',
        '-H',
        'Idempotency-Key: rproxy-1',
        // What a partner may claim; nginx replaces all four.
        '-H',
        'X-Forwarded-For: 203.0.113.66',
        '-H',
        'X-Real-IP: 203.0.113.66',
        '-H',
        'X-Forwarded-Proto: http',
        '-H',
        'X-Client-Subject: CN=forged',
        '--data-binary',
        `@${orderFile}`,
      ],
    );
    const reply = only(run, 'POST');
    assert.equal(reply.status, 202, `${reply.body} ${run.stderr} ${tls.errors()}`);
    assert.deepEqual(reply.headers['message-id'], ['rproxy-1'], 'the bridge answered');
    const requestId = reply.headers['x-request-id']?.[0];
    assert.ok(requestId !== undefined, 'X-Request-Id passed through');
    assert.equal(reply.headers['uwebsockets'], undefined, 'proxy_hide_header uWebSockets');
    assert.deepEqual(reply.headers['server'], ['nginx'], 'server_tokens off');

    const [msg] = await takeExactly(1);
    assert.ok(msg);
    assert.deepEqual(msg.content, Buffer.from(ORDER, 'utf8'), 'body byte for byte');
    assert.equal(msg.properties.messageId, 'rproxy-1');
    const h = { ...msg.properties.headers };
    assert.equal(h['x-forwarded-for'], '127.0.0.1', "the partner's address, not its claim");
    assert.equal(h['x-real-ip'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'https');
    assert.equal(h['x-client-subject'], undefined, 'a client-sent subject is never passed');
    assert.equal(h['x-http-query'], 'src=curl');
    assert.equal(h['x-request-id'], requestId);

    const line = await accessLine(tls, (l) => l.includes(`request_id=${requestId}`));
    assert.match(line, new RegExp(` upstream=127\\.0\\.0\\.1:${bridge.port} `), line);
    assert.match(line, / 202 .* tls=TLSv1\.[23] client_verify=NONE$/, line);
  });

  it('TLS 1.2 and 1.3 only: TLS 1.0 and 1.1 are refused as protocol versions, even to a client that allows them', async () => {
    const handshake = (version: string) =>
      runToExit(
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${tls.port}`, '-CAfile', pki.caCert, `-${version}`]
          // OpenSSL 3's own client refuses TLS 1.0/1.1 at its default security level: lower it,
          // so that only the server can be the one refusing.
          .concat(['-cipher', 'DEFAULT:@SECLEVEL=0']),
        { timeoutMs: 20_000 },
      );
    for (const version of ['tls1', 'tls1_1']) {
      const run = await handshake(version);
      // Alert 70, protocol_version: refused by ssl_protocols (Debian's http { } allows them),
      // not merely for want of a common cipher (alert 40).
      assert.match(run.stdout + run.stderr, /alert protocol version/, `${version}: ${run.stderr}`);
    }
    for (const [version, name] of [
      ['tls1_2', 'TLSv1.2'],
      ['tls1_3', 'TLSv1.3'],
    ] as const) {
      const run = await handshake(version);
      // "New, <version>, Cipher is ..." comes right after the handshake (the SSL-Session
      // block may not: with TLS 1.3 it waits for a session ticket).
      assert.ok(run.stdout.includes(`New, ${name}, Cipher is `), `${version}: ${run.stdout}`);
      assert.match(run.stdout, /Verify return code: 0 \(ok\)/, `${version}: chains to the test CA`);
    }
  });

  it('keep-alive: five POSTs on one TLS connection, all 202, over one kept-alive connection to the bridge', async () => {
    const batch = async (round: number): Promise<void> => {
      const urls = [1, 2, 3, 4, 5].map((n) => `${tls.url}/orders?round=${round}&n=${n}`);
      const run = await curl(pki.caCert, urls, [
        '-H',
        'Content-Type: application/xml',
        '--data-binary',
        `@${orderFile}`,
      ]);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(
        run.transfers.map((t) => t.status),
        [202, 202, 202, 202, 202],
        run.stderr,
      );
      assert.deepEqual(
        run.transfers.map((t) => t.connects),
        [1, 0, 0, 0, 0],
        'curl opened one connection and reused it',
      );
      const got = await takeExactly(5, queue, `round ${round}`);
      assert.deepEqual(
        got.map((m) => String(m.properties.headers?.['x-http-query'])),
        urls.map((u) => new URL(u).search.slice(1)),
        'each published once, in order',
      );
    };
    await batch(1);
    const after1 = connectionsTo(bridge.port);
    assert.equal(
      after1.length,
      1,
      `nginx keeps one idle connection to the bridge: ${after1.join()}`,
    );
    await batch(2);
    assert.deepEqual(
      connectionsTo(bridge.port),
      after1,
      'the second TLS connection was served over the same upstream connection',
    );
  });

  it('partners the bridge cannot serve itself are served through nginx: HTTP/1.0, and requests pipelined in one packet', async () => {
    const old = await postOne(`${tls.url}/orders?v=1.0`, '<old/>', 'HTTP/1.0', ['--http1.0']);
    assert.equal(old.status, 202, old.body);

    const socket = connect({ host: '127.0.0.1', port: tls.port, ca });
    await once(socket, 'secureConnect');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = once(socket, 'end');
    // Both requests in one write: uWebSockets.js alone closes such a connection unanswered.
    socket.write(
      rawPost('/orders?pipe=1', '<p n="1"/>') +
        rawPost('/orders?pipe=2', '<p n="2"/>', ['Connection: close']),
    );
    await ended;
    socket.destroy();
    const text = Buffer.concat(received).toString('latin1');
    assert.deepEqual(
      [...text.matchAll(/^HTTP\/1\.1 (\d{3}) /gm)].map((m) => m[1]),
      ['202', '202'],
      text,
    );
    const got = await takeExactly(3);
    assert.deepEqual(
      got.map((m) => m.content.toString()),
      ['<old/>', '<p n="1"/>', '<p n="2"/>'],
    );
  });

  it("client_max_body_size is the bridge's maxBodyBytes: a body of exactly that streams through; one byte more is nginx's 413, every time, declared or chunked", async () => {
    const body = (bytes: number, name: string): string => {
      const file = path.join(scratch, name);
      writeFileSync(file, `<xml>${'a'.repeat(bytes - '<xml></xml>'.length)}</xml>`);
      return file;
    };
    const atLimit = body(bodyLimit, 'at-limit.xml');
    const over = body(bodyLimit + 1, 'over-limit.xml');
    const post = (file: string, extra: readonly string[], what: string): Promise<CurlTransfer> =>
      postOne(`${tls.url}/orders`, `@${file}`, what, extra);

    const chunked = ['-H', 'Transfer-Encoding: chunked'];
    const ok = await post(atLimit, chunked, 'at the limit, chunked');
    assert.equal(ok.status, 202, `${ok.body} ${tls.errors()}`);
    const [msg] = await takeExactly(1, queue, 'at the limit');
    assert.deepEqual(msg?.content, readFileSync(atLimit), 'body byte for byte');

    // A refusal the bridge gave would race nginx's writes (502 now and then); nginx's does not.
    for (let round = 0; round < 3; round++) {
      for (const [extra, what] of [
        [[], 'declared'],
        [chunked, 'chunked'],
      ] as const) {
        const refused = await post(over, extra, `${what}, round ${round}`);
        assert.equal(
          refused.status,
          413,
          `${what}, round ${round}: ${refused.body} ${tls.errors()}`,
        );
        assert.equal(refused.headers['x-request-id'], undefined, `${what}: nginx answered`);
      }
    }
    await assertNothingPublished('413');
  });

  it('client certificates required (ssl_verify_client on): no certificate, 400 from nginx; nothing reaches the bridge', async () => {
    const reply = await postOne(`${requireCert.url}/orders`, '<no-cert/>', 'no certificate');
    assert.equal(reply.status, 400, reply.body);
    assert.match(reply.body, /No required SSL certificate was sent/);
    assert.equal(reply.headers['x-request-id'], undefined, 'nginx answered, not the bridge');
    await assertNothingPublished('no certificate');
    const line = await accessLine(requireCert, (l) => l.includes('client_verify=NONE'));
    assert.match(line, / 400 .* upstream=- /, line);
  });

  it("client certificates required: a stranger's certificate is refused; nothing reaches the bridge", async () => {
    const run = await curl(
      pki.caCert,
      [`${requireCert.url}/orders`],
      [
        '--cert',
        pki.strangerCert,
        '--key',
        pki.strangerKey,
        '-H',
        'Content-Type: application/xml',
        '--data-binary',
        '<stranger/>',
      ],
    );
    const status = run.transfers[0]?.status ?? 0;
    // nginx finishes the handshake and answers 400 itself; a TLS alert would do as well.
    assert.ok(
      status === 400 || (status === 0 && run.code !== 0),
      `refused: status ${status}, curl exit ${String(run.code)}: ${run.stderr}`,
    );
    if (status === 400) assert.match(run.transfers[0]!.body, /SSL certificate error/);
    await assertNothingPublished('stranger');
  });

  it('client certificates required: the CA-signed certificate gets 202, and only its verified subject reaches the message', async () => {
    const reply = await postOne(`${requireCert.url}/orders`, '<signed/>', 'CA-signed', [
      '--cert',
      pki.clientCert,
      '--key',
      pki.clientKey,
      '-H',
      'X-Client-Subject: CN=forged',
    ]);
    assert.equal(reply.status, 202, `${reply.body} ${requireCert.errors()}`);
    const [msg] = await takeExactly(1);
    assert.equal(msg?.properties.headers?.['x-client-subject'], 'CN=acme-gateway');
    assert.equal(msg?.properties.headers?.['x-forwarded-proto'], 'https');
  });

  it('client certificates optional (ssl_verify_client optional, clientCert: request): none passes without a subject, a stranger is refused, the CA-signed one carries its subject', async () => {
    const post = (body: string, extra: readonly string[]): Promise<CurlRun> =>
      curlPost(`${optionalCert.url}/orders`, body, [...extra, '-H', 'X-Client-Subject: CN=forged']);
    const none = only(await post('<none/>', []), 'no certificate');
    assert.equal(none.status, 202, none.body);
    const [unverified] = await takeExactly(1, queue, 'no certificate');
    assert.equal(
      unverified?.properties.headers?.['x-client-subject'],
      undefined,
      'no verified certificate: the client-sent subject is dropped',
    );

    const stranger = await post('<stranger/>', [
      '--cert',
      pki.strangerCert,
      '--key',
      pki.strangerKey,
    ]);
    const strangerStatus = stranger.transfers[0]?.status ?? 0;
    assert.ok(
      strangerStatus === 400 || (strangerStatus === 0 && stranger.code !== 0),
      `stranger refused: ${strangerStatus} ${stranger.stderr}`,
    );
    await assertNothingPublished('optional, stranger');

    const signed = only(
      await post('<signed/>', ['--cert', pki.clientCert, '--key', pki.clientKey]),
      'CA-signed',
    );
    assert.equal(signed.status, 202, signed.body);
    const [verified] = await takeExactly(1, queue, 'CA-signed');
    assert.equal(verified?.properties.headers?.['x-client-subject'], 'CN=acme-gateway');
  });

  it('a certificate let through unverified (optional_no_ca) never gives a subject: only SUCCESS maps to X-Client-Subject', async () => {
    const reply = await postOne(
      `${unverifiedCert.url}/orders`,
      '<unverified/>',
      'optional_no_ca, stranger',
      ['--cert', pki.strangerCert, '--key', pki.strangerKey, '-H', 'X-Client-Subject: CN=forged'],
    );
    assert.equal(reply.status, 202, reply.body);
    const [msg] = await takeExactly(1);
    assert.equal(msg?.properties.headers?.['x-client-subject'], undefined, 'not CN=intruder');
    const line = await accessLine(unverifiedCert, (l) => l.includes('client_verify=FAILED'));
    assert.match(line, / 202 /, line);
  });

  it("a wait shorter than proxy_read_timeout: the bridge's own 504, with its Message-Id, passes through", async () => {
    const call = httpsPost(`${tls.url}/rpc-short`, {
      ca,
      headers: { 'Content-Type': 'application/xml', 'Idempotency-Key': 'rpc-short' },
    });
    call.req.end('<call id="short"/>');
    const reply = await call.response;
    const problem = assertProblem(reply, 504, 'rpc timeout through nginx');
    assert.ok(problem.detail.includes(`${SHORT_RPC_TIMEOUT_MS} ms`), problem.detail);
    assert.equal(header(reply, 'message-id'), 'rpc-short', 'the key a partner retries with');
    await broker.drain(rpcQueue); // the unanswered request (it expires with its caller anyway)
  });

  it("the body streams to the bridge as it arrives (proxy_request_buffering off), and the bridge's 503 with Retry-After passes through unchanged", async () => {
    const body = '<xml><held>' + 'h'.repeat(200) + '</held></xml>';
    const half = body.length / 2;
    const held = httpsPost(`${tls.url}/orders`, {
      ca,
      headers: {
        'Content-Type': 'application/xml',
        'Content-Length': String(body.length),
        'Idempotency-Key': 'held',
      },
    });
    await new Promise<void>((resolve, reject) =>
      held.req.write(body.slice(0, half), (err) => (err ? reject(err) : resolve())),
    );
    // Probes with a body the bridge refuses (400, nothing published) until the bridge counts the
    // held upload against maxUploads (1). Had nginx buffered it, the bridge would never see it.
    const probe = (): Promise<Reply> => {
      const p = httpsPost(`${tls.url}/orders`, {
        ca,
        headers: { 'Content-Type': 'application/xml', 'Idempotency-Key': 'probe' },
      });
      p.req.end('<unclosed>');
      return p.response;
    };
    const refused = await waitUntil(
      'a 503 from the bridge while the held upload streams',
      probe,
      (r) => r.status === 503,
      { timeoutMs: 5000 },
    );
    const problem = assertProblem(refused, 503, 'maxUploads through nginx');
    assert.match(problem.detail, /maxUploads \(1\)/);
    assertRetryAfter(refused, 'maxUploads through nginx');
    assert.equal(header(refused, 'retry-after'), '1');
    assert.equal(
      (JSON.parse(refused.body.toString()) as { code?: string }).code,
      'BRIDGE_OVERLOADED',
    );
    assert.equal(header(refused, 'content-length'), String(refused.body.length));

    held.req.end(body.slice(half));
    const done = await held.response;
    assert.equal(done.status, 202, done.body.toString());
    assertRequestId(done, 'held');
    assert.deepEqual(messageIds(await takeExactly(1)), ['held'], 'the probes published nothing');
  });

  it('a POST the bridge received is never sent again: its worker killed before answering gives 502 from nginx and one copy', async () => {
    const warm = await postOne(`${tls.url}/orders`, '<warm/>', 'warm-up');
    assert.equal(warm.status, 202, warm.body);
    await takeExactly(1);
    // The rpc request is published at once and then waits for a reply that never comes, over
    // the upstream connection the warm-up left idle (a cached one: the case in which nginx
    // would resend a failed request if proxy_next_upstream allowed it).
    const call = httpsPost(`${tls.url}/rpc`, {
      ca,
      headers: { 'Content-Type': 'application/xml', 'Idempotency-Key': 'rpc-once' },
    });
    call.req.end('<call id="once"/>');
    await waitUntil(
      'the rpc request in its queue',
      () => broker.count(rpcQueue),
      (n) => n === 1,
      {
        timeoutMs: 5000,
      },
    );
    const [worker] = await workerPids(bridge);
    assert.ok(worker !== undefined);
    process.kill(worker, 'SIGKILL');
    const reply = await call.response;
    assert.equal(reply.status, 502, reply.body.toString());
    assert.equal(header(reply, 'x-request-id'), undefined, 'nginx answered, not the bridge');
    assert.deepEqual(messageIds(await takeExactly(1, rpcQueue, 'rpc')), ['rpc-once']);
    const line = await accessLine(tls, (l) => l.includes('"POST /rpc HTTP/1.1" 502'));
    assert.match(
      line,
      new RegExp(` upstream=127\\.0\\.0\\.1:${bridge.port} upstream_status=502 `),
      `one attempt, not a second one to the reforked worker: ${line}`,
    );
    await waitUntilReady(bridge);
  });

  it('a clientCert partner through nginx (ssl_verify_client optional, trustedProxies 127.0.0.1/32): its certificate gets 2xx with x-partner; none, a forged header or another subject from the same CA gets 401', async (t) => {
    const SUBJECT = 'CN=acme-gateway,O=Acme';
    const ROUTE = 'gateway-orders';
    const partnerQueue = await broker.queue(uniqueName('rproxy-partner'));
    // nginx's $ssl_client_s_dn is RFC 2253: the last RDN of the certificate's subject first.
    const [right, other] = await Promise.all([
      pki.issueClient('/O=Acme/CN=acme-gateway'),
      pki.issueClient('/O=Acme/CN=other-gateway'),
    ]);
    const gated = await startBridge(
      baseConfig(
        [
          {
            name: ROUTE,
            path: '/gateway/orders',
            mode: 'publish',
            exchange: '',
            routingKey: partnerQueue,
            partners: ['acme-gateway'],
          },
        ],
        {
          workers: 1,
          trustedProxies: ['127.0.0.1/32'],
          partners: [{ id: 'acme-gateway', auth: { clientCert: { subjects: [SUBJECT] } } }],
        },
      ),
    );
    t.after(() => gated.stop());
    const proxy = await startNginx(gated.port, pki, 'optional');
    t.after(() => proxy.stop());
    const url = `${proxy.url}/gateway/orders`;
    const failures = (reason: string): Promise<number | undefined> =>
      metricValue(gated.adminUrl, 'bridge_auth_failures_total', { route: ROUTE, reason });
    const assertUnauthorized = (reply: CurlTransfer, what: string): void => {
      assert.equal(reply.status, 401, `${what}: ${reply.body} ${proxy.errors()}`);
      assert.ok(reply.headers['x-request-id'] !== undefined, `${what}: the bridge answered`);
      assert.equal(
        (JSON.parse(reply.body) as { code?: string }).code, // the bridge's problem+json
        'BRIDGE_UNAUTHORIZED',
        what,
      );
      assert.equal(reply.headers['www-authenticate'], undefined, `${what}: no Bearer challenge`);
    };

    const signed = await postOne(url, '<signed/>', 'the partner certificate', [
      '--cert',
      right.cert,
      '--key',
      right.key,
    ]);
    assert.equal(signed.status, 202, `${signed.body} ${proxy.errors()}`);
    const [msg] = await takeExactly(1, partnerQueue, 'the partner certificate');
    const h = { ...msg?.properties.headers };
    assert.equal(h['x-partner'], 'acme-gateway');
    assert.equal(h['x-remote-addr'], '127.0.0.1', "nginx's X-Real-IP: curl's address");
    assert.equal(h['x-client-subject'], undefined, 'credentials are not copied into the message');
    assert.equal(h['x-client-verify'], undefined, 'credentials are not copied into the message');

    const none = await postOne(url, '<none/>', 'no certificate');
    assertUnauthorized(none, 'no certificate');
    // What a client may claim itself: nginx replaces both headers (NONE, no subject).
    const forged = await postOne(url, '<forged/>', 'forged headers', [
      '-H',
      'X-Client-Verify: SUCCESS',
      '-H',
      `X-Client-Subject: ${SUBJECT}`,
    ]);
    assertUnauthorized(forged, 'forged headers without a certificate');
    // Verified by nginx (same CA), but not the partner's subject: one with another CN, and the
    // suite's CN=acme-gateway, which lacks the O= of the configured subject (exact match only).
    for (const [cert, key, what] of [
      [other.cert, other.key, 'CN=other-gateway,O=Acme'],
      [pki.clientCert, pki.clientKey, 'CN=acme-gateway'],
    ] as const) {
      const reply = await postOne(url, '<other/>', what, ['--cert', cert, '--key', key]);
      assertUnauthorized(reply, what);
    }
    assert.equal(await broker.count(partnerQueue), 0, '401: nothing published');
    await waitUntil(
      'bridge_auth_failures_total for the refusals',
      async () => ({ missing: await failures('missing'), wrong: await failures('wrong') }),
      (m) => m.missing === 2 && m.wrong === 2,
      { timeoutMs: 10_000 },
    );
    const line = await accessLine(
      proxy,
      (l) => l.includes('client_verify=SUCCESS') && / 401 /.test(l),
    );
    assert.match(line, new RegExp(` upstream=127\\.0\\.0\\.1:${gated.port} `), line);
  });

  it('partner refusals decided at the head reach the partner through nginx while it still streams a large body: 401 and 429 with Retry-After, never 502, over kept-alive connections', async (t) => {
    const partnerQueue = await broker.queue(uniqueName('rproxy-refused'));
    const keyFile = path.join(scratch, 'refused.key');
    const KEY = 'refused-partner-key-0123456789';
    writeFileSync(keyFile, `${KEY}\n`);
    const gated = await startBridge(
      baseConfig(
        [
          {
            path: '/limited',
            mode: 'publish',
            exchange: '',
            routingKey: partnerQueue,
            partners: ['limited'],
          },
        ],
        {
          workers: 1,
          trustedProxies: ['127.0.0.1/32'],
          partners: [
            {
              id: 'limited',
              auth: { apiKey: { keys: [`file:${keyFile}`] } },
              rateLimit: { perSecond: 1, burst: 1 },
            },
          ],
        },
      ),
    );
    t.after(() => gated.stop());
    const proxy = await startNginx(gated.port, pki, 'off');
    t.after(() => proxy.stop());
    // 900 KB: far more than the socket buffers hold, so nginx is still writing the body when
    // the bridge answers from the head.
    const bigFile = path.join(scratch, 'big.xml');
    writeFileSync(bigFile, `<big>${'x'.repeat(900_000)}</big>`);
    const url = `${proxy.url}/limited`;
    const urls = Array.from({ length: 12 }, () => url);
    const run = (key: string): Promise<CurlRun> =>
      curl(pki.caCert, urls, [
        '-H',
        'Content-Type: application/xml',
        '-H',
        `X-Api-Key: ${key}`,
        '--data-binary',
        `@${bigFile}`,
      ]);

    const wrong = await run('not-the-key-0123456789abcdef');
    assert.equal(wrong.transfers.length, urls.length, wrong.stderr);
    for (const r of wrong.transfers) {
      assert.equal(r.status, 401, `wrong key: ${r.body} ${proxy.errors()}`);
      assert.equal((JSON.parse(r.body) as { code?: string }).code, 'BRIDGE_UNAUTHORIZED'); // the bridge's problem+json
    }
    const limited = await run(KEY);
    const statuses = limited.transfers.map((r) => r.status);
    assert.equal(statuses.length, urls.length, limited.stderr);
    assert.ok(!statuses.includes(502), `no 502: ${statuses.join(' ')} ${proxy.errors()}`);
    const accepted = statuses.filter((s) => s === 202).length;
    assert.ok(accepted >= 1, `the burst token is served: ${statuses.join(' ')}`);
    const refused = limited.transfers.filter((r) => r.status === 429);
    assert.equal(accepted + refused.length, urls.length, statuses.join(' '));
    for (const r of refused) assert.match(r.headers['retry-after']?.[0] ?? '', /^[1-9]\d*$/);
    assert.equal(await broker.count(partnerQueue), accepted, 'exactly the 202s were published');
    // Straight to the bridge, a refused request keeps the connection (curl itself closes one
    // whose upload it cut short, so this writes raw HTTP): uWS skips the unread body by its
    // Content-Length, and the next request on the connection, sent right behind it, is served.
    const raw = await openRaw(gated.port);
    t.after(() => raw.destroy());
    const big = readFileSync(bigFile, 'utf8');
    await raw.write(rawPost('/limited', big, ['X-Api-Key: not-the-key-0123456789abcdef']));
    await raw.write(rawPost('/limited', big, ['X-Api-Key: not-the-key-0123456789abcdef']));
    const answers = await raw.responsesArrived(2, 20_000);
    assert.deepEqual(
      answers.map((r) => [r.status, r.headers['connection']]),
      [
        [401, undefined],
        [401, undefined],
      ],
      'both answered on the one connection, neither closing it',
    );
  });

  // Last: it stops the bridge.
  it('with the bridge stopped, nginx answers 502 at once and nothing is published', async () => {
    await bridge.stop();
    const started = Date.now();
    const reply = await postOne(`${tls.url}/orders`, '<gone/>', 'bridge stopped');
    assert.equal(reply.status, 502, reply.body);
    assert.ok(Date.now() - started < 5000, 'not held until a timeout');
    await assertNothingPublished('bridge stopped');
  });
});
