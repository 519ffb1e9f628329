/**
 * Micro-benchmark of the partner verifiers (#13): µs per verification of
 * StandardWebhookVerifier.verify (src/worker/partners/standard-webhooks.ts) with one and two
 * secrets over a ~1 KB body (a WeChat Pay notification, the body of bench/wechat-1k.lua) and a
 * 64 KiB one (a large cXML order), including the worst case where the signature matches neither
 * of two secrets; the apiKey comparison (gate.ts: timingSafeEqual against each of two keys); the WeChat
 * SHA-1 signature (src/worker/partners/wechat-signature.ts); and ReplayGuard.seen for a new id
 * with the guard full, which every accepted webhook also pays.
 *
 * Each measurement runs in a fresh process (as bench/xml-check-cost.ts does: one variant's shapes
 * never slow another's), a loop of about 0.25 s after a warm-up whose CPU time is divided by its
 * calls; rounds alternate the variants in rotated order and the median round is reported.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/partner-auth-cost.js [--rounds 9]
 *
 * `node dist/bench/partner-auth.js` runs this and the end-to-end comparison and writes the report.
 */
import { execFile } from 'node:child_process';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { median } from './harness.js';
import { ReplayGuard } from '../src/worker/partners/replay-guard.js';
import {
  signStandardWebhook,
  StandardWebhookVerifier,
  type StandardWebhookHeaders,
} from '../src/worker/partners/standard-webhooks.js';
import { verifyWechatSignature, wechatSignature } from '../src/worker/partners/wechat-signature.js';

const SELF = fileURLToPath(import.meta.url);
/** Timed per measurement after the warm-up: long enough to swamp timer and scheduling noise. */
const MEASURE_MS = 250;
const WARMUP_MS = 60;

/**
 * The body of bench/wechat-1k.lua with out_trade_no = 1 (the script's template, byte for byte):
 * the ~1 KB notification every other bench posts.
 */
export function wechatBody(tradeNo = 1): Buffer {
  return Buffer.from(
    '<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><attach><![CDATA[支付测试]]></attach>' +
      '<bank_type><![CDATA[CFT]]></bank_type><fee_type><![CDATA[CNY]]></fee_type>' +
      '<is_subscribe><![CDATA[Y]]></is_subscribe><mch_id><![CDATA[10000100]]></mch_id>' +
      '<nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str>' +
      '<openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid>' +
      `<out_trade_no><![CDATA[${tradeNo}]]></out_trade_no><result_code><![CDATA[SUCCESS]]></result_code>` +
      `<MsgType>pay</MsgType><pad>${'x'.repeat(560)}</pad></xml>`,
    'utf8',
  );
}

/** A cXML OrderRequest of exactly 64 KiB: the large end of what partners post. */
export function cxmlBody(bytes = 64 * 1024): Buffer {
  const head =
    '<?xml version="1.0" encoding="UTF-8"?><cXML payloadID="1701961200.4242@buyer.example" ' +
    'timestamp="2026-12-07T12:00:00+00:00"><Header><From><Credential domain="NetworkID">' +
    '<Identity>AN01000000001</Identity></Credential></From><To><Credential domain="DUNS">' +
    '<Identity>123456789</Identity></Credential></To><Sender><Credential domain="NetworkID">' +
    '<Identity>AN01000000001</Identity></Credential><UserAgent>bench</UserAgent></Sender></Header>' +
    '<Request><OrderRequest><OrderRequestHeader orderID="PO-4242" orderDate="2026-12-07" type="new">' +
    '<Total><Money currency="EUR">0</Money></Total></OrderRequestHeader>';
  const tail = '</OrderRequest></Request></cXML>';
  const items: string[] = [];
  let size = Buffer.byteLength(head + tail);
  for (let line = 1; ; line++) {
    const item =
      `<ItemOut quantity="${line}" lineNumber="${line}"><ItemID><SupplierPartID>SP-${100000 + line}` +
      '</SupplierPartID></ItemID><ItemDetail><UnitPrice><Money currency="EUR">12.50</Money>' +
      '</UnitPrice><Description xml:lang="en">Bench item</Description>' +
      '<UnitOfMeasure>EA</UnitOfMeasure></ItemDetail></ItemOut>';
    if (size + item.length > bytes - 16) break;
    items.push(item);
    size += item.length;
  }
  // A comment pads to the exact size (its minimum is 7 bytes: <!---->).
  const pad = `<!--${'p'.repeat(bytes - size - 7)}-->`;
  const body = Buffer.from(head + items.join('') + pad + tail, 'utf8');
  if (body.length !== bytes) throw new Error(`cxmlBody: ${body.length} bytes, not ${bytes}`);
  return body;
}

/** A Standard Webhooks secret as a sender generates one: whsec_ + base64 of 24 random bytes. */
export const newWebhookSecret = (): string => `whsec_${randomBytes(24).toString('base64')}`;
/** An API key as the README suggests generating one: `openssl rand -hex 32`. */
export const newApiKey = (): string => randomBytes(32).toString('hex');

/**
 * The apiKey check: a copy of src/worker/partners/gate.ts's module-private constantTimeIncludes
 * (the offered value against every key, no early exit, a length mismatch being no match).
 */
function apiKeyMatches(offered: string, keys: readonly Buffer[]): boolean {
  const value = Buffer.from(offered, 'utf8');
  let matched = false;
  for (const key of keys) {
    // No early return: the time does not tell which key (if any) matched.
    if (value.length === key.length && timingSafeEqual(value, key)) matched = true;
  }
  return matched;
}

interface Variant {
  readonly id: string;
  readonly label: string;
  /** What one call does; `expect` is what it must answer (checked before timing). */
  setup(): { readonly call: () => boolean; readonly expect: boolean };
}

const NOW = 1_765_000_000;

function webhook(
  size: '1k' | '64k',
  secrets: 1 | 2,
  outcome: 'first' | 'second' | 'neither',
): Variant {
  const sizeLabel = size === '1k' ? '1 KB' : '64 KiB';
  const what =
    outcome === 'first'
      ? 'signed with it'
      : outcome === 'second'
        ? 'signed with the second (2 HMACs)'
        : 'matching neither (2 HMACs, worst case)';
  return {
    id: `webhook-${size}-${secrets}s${outcome === 'neither' ? '-wrong' : ''}`,
    label: `webhook, ${sizeLabel} body, ${secrets === 1 ? 'one secret' : 'two secrets'}, ${what}`,
    setup() {
      const body = size === '1k' ? wechatBody() : cxmlBody();
      const keys = Array.from({ length: secrets }, newWebhookSecret);
      const verifier = new StandardWebhookVerifier(keys, 300);
      const id = 'msg_2KWPBgLlAfxdpx2AI54pPJ85f4W';
      const signer = outcome === 'first' ? keys[0] : outcome === 'second' ? keys[1] : undefined;
      const headers: StandardWebhookHeaders = {
        id,
        timestamp: String(NOW),
        signature:
          signer === undefined
            ? `v1,${randomBytes(32).toString('base64')}` // same length: timingSafeEqual runs
            : signStandardWebhook(signer, id, NOW, body),
      };
      return { call: () => verifier.verify(headers, body, NOW).ok, expect: signer !== undefined };
    },
  };
}

const VARIANTS: readonly Variant[] = [
  webhook('1k', 1, 'first'),
  webhook('1k', 2, 'second'),
  webhook('1k', 2, 'neither'),
  webhook('64k', 1, 'first'),
  webhook('64k', 2, 'second'),
  webhook('64k', 2, 'neither'),
  {
    id: 'replay-guard',
    label: 'webhook replay guard: ReplayGuard.seen, new id, 100,000 remembered (the default cap)',
    setup() {
      const guard = new ReplayGuard(300);
      let n = 0;
      const next = (): boolean => guard.seen(`msg_bench_${n++}`, NOW);
      for (let i = 0; i < 100_000; i++) next(); // full: from now on each new id evicts the oldest
      return { call: () => !next(), expect: true };
    },
  },
  {
    id: 'apikey-2k',
    label: 'apiKey: timingSafeEqual against two 64-character keys, the second matching',
    setup() {
      const keys = [newApiKey(), newApiKey()];
      const buffers = keys.map((k) => Buffer.from(k, 'utf8'));
      const offered = keys[1] ?? '';
      return { call: () => apiKeyMatches(offered, buffers), expect: true };
    },
  },
  {
    id: 'apikey-2k-wrong',
    label: 'apiKey: timingSafeEqual against two 64-character keys, neither matching',
    setup() {
      const buffers = [newApiKey(), newApiKey()].map((k) => Buffer.from(k, 'utf8'));
      const offered = newApiKey();
      return { call: () => apiKeyMatches(offered, buffers), expect: false };
    },
  },
  {
    id: 'wechat',
    label: 'wechat: SHA-1 of sorted token, timestamp, nonce, compared with the query signature',
    setup() {
      const token = 'benchToken4242';
      const params = {
        timestamp: String(NOW),
        nonce: '1462349270',
        signature: wechatSignature(token, String(NOW), '1462349270'),
      };
      return { call: () => verifyWechatSignature(token, params).ok, expect: true };
    },
  },
];

/**
 * Child process: time one variant; prints `{"micros": µs per call, "calls": n}`. The loop runs
 * for a wall-clock time, but what is divided by the calls is the process's CPU time
 * (process.cpuUsage: user + system, all its threads): time spent waiting for a core while other
 * processes of a shared machine run is not counted.
 */
function measure(variant: Variant): void {
  const { call, expect } = variant.setup();
  if (call() !== expect)
    throw new Error(`${variant.id}: answered ${String(!expect)}, not ${expect}`);
  const runFor = (ms: number): { calls: number; cpuMicros: number } => {
    const cpu = process.cpuUsage();
    const until = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
    let calls = 0;
    let wrong = 0;
    while (process.hrtime.bigint() < until) {
      for (let i = 0; i < 32; i++) if (call() !== expect) wrong++;
      calls += 32;
    }
    const used = process.cpuUsage(cpu);
    if (wrong > 0) throw new Error(`${variant.id}: ${wrong} calls answered otherwise`);
    return { calls, cpuMicros: used.user + used.system };
  };
  runFor(WARMUP_MS); // V8 optimises the loop and the verifier before they are timed
  const { calls, cpuMicros } = runFor(MEASURE_MS);
  process.stdout.write(`${JSON.stringify({ micros: cpuMicros / calls, calls })}\n`);
}

export interface VerifierCost {
  readonly id: string;
  readonly label: string;
  /** µs per verification in each round, and their median. */
  readonly samples: readonly number[];
  readonly median: number;
}

const execFileAsync = promisify(execFile);

/** Alternates the variants over `rounds`, one child process per variant and round. */
export async function measureVerifierCosts(
  rounds: number,
  log: (line: string) => void = () => undefined,
  /** Awaited before each round (partner-auth.ts: wait for a quiet machine). */
  beforeRound: () => Promise<unknown> = () => Promise.resolve(),
): Promise<VerifierCost[]> {
  const samples = new Map<string, number[]>(VARIANTS.map((v) => [v.id, []]));
  for (let round = 0; round < rounds; round++) {
    await beforeRound();
    for (let k = 0; k < VARIANTS.length; k++) {
      const variant = VARIANTS[(round + k) % VARIANTS.length] as Variant; // index in range
      const { stdout } = await execFileAsync(process.execPath, [SELF, '--variant', variant.id], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      // This script's own child printed it.
      const { micros } = JSON.parse(stdout) as { micros: number };
      samples.get(variant.id)?.push(micros);
    }
    log(`partner-auth: verifier costs, round ${round + 1} of ${rounds} done`);
  }
  return VARIANTS.map((v) => {
    const all = samples.get(v.id) ?? [];
    return { id: v.id, label: v.label, samples: all, median: median(all) };
  });
}

const us = (n: number): string => (n < 10 ? n.toFixed(2) : n.toFixed(1));

/** The markdown table of `measureVerifierCosts`' result. */
export function verifierCostTable(costs: readonly VerifierCost[]): string {
  return [
    '| verification | µs (median) | rounds (µs) |',
    '| --- | ---: | --- |',
    ...costs.map(
      (c) => `| ${c.label} | ${us(c.median)} | ${c.samples.map((s) => us(s)).join(' ')} |`,
    ),
  ].join('\n');
}

if (process.argv[1] === SELF) {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '9' }, variant: { type: 'string' } },
  });
  if (values.variant !== undefined) {
    const variant = VARIANTS.find((v) => v.id === values.variant);
    if (variant === undefined)
      throw new Error(
        `unknown --variant ${values.variant}: one of ${VARIANTS.map((v) => v.id).join(', ')}`,
      );
    measure(variant);
  } else {
    const rounds = Number(values.rounds);
    const costs = await measureVerifierCosts(rounds);
    process.stdout.write(
      `${rounds} rounds, one process per variant and round, ${MEASURE_MS} ms timed each; ` +
        `1 KB body = ${wechatBody().length} bytes, 64 KiB body = ${cxmlBody().length} bytes\n\n` +
        `${verifierCostTable(costs)}\n`,
    );
  }
}
