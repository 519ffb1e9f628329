/**
 * The configuration schema: the one place that states every key, its type, its default and its
 * limits. Unknown keys are errors (strict objects), like Fastify's `additionalProperties: false`.
 */
import { z } from 'zod';
import { parseCidr } from './cidr.js';
import { UWS_BUILD_IDS } from './uws.js';

const DEFAULT_STALL_MS = 2000;

/** Headers the bridge sets itself or that RabbitMQ interprets (sender-selected distribution). */
const RESERVED_FORWARD_HEADERS = new Set([
  'cc',
  'bcc',
  'x-http-method',
  'x-http-path',
  'x-http-query',
  'x-remote-addr',
  'x-request-id',
  'x-xml-root',
  'x-partner',
  'content-length',
  'transfer-encoding',
  'connection',
]);

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const XML_NAME = /^[A-Za-z_:\u00C0-\uFFEF][\w.:\u00B7\u00C0-\uFFEF-]*$/;

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, {
    message: 'must be host:port, e.g. 0.0.0.0:8080',
    abort: true,
  })
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535');

const amqpUrl = z
  .string()
  .regex(/^amqps?:\/\/[^\s]+$/, { message: 'must be an amqp:// or amqps:// URL', abort: true })
  .refine((s) => URL.canParse(s), 'is not a valid URL');

const int = (min: number, max: number) => z.number().int().min(min).max(max);

const headerName = z
  .string()
  .regex(HEADER_NAME, 'is not a valid HTTP header name')
  .transform((s) => s.toLowerCase());

const forwardHeaderName = headerName.refine(
  (s) => !RESERVED_FORWARD_HEADERS.has(s),
  'is reserved: CC/BCC re-route messages in RabbitMQ and x-http-*/x-request-id/x-xml-root are set by the bridge',
);

/**
 * `{/xml/MsgType}` placeholders: each an absolute element path from the root, with an optional
 * final `@attribute`. Literal text must be a valid routing-key fragment.
 */
const routingKeyTemplate = z
  .string()
  .max(255)
  .superRefine((template, ctx) => {
    for (const match of template.matchAll(/\{([^}]*)\}/g)) {
      const path = match[1] ?? '';
      const steps = path.split('/');
      const ok =
        steps[0] === '' &&
        steps.length >= 2 &&
        steps
          .slice(1)
          .every((s, i, all) =>
            i === all.length - 1 && s.startsWith('@')
              ? XML_NAME.test(s.slice(1))
              : XML_NAME.test(s),
          );
      if (!ok) {
        ctx.addIssue({
          code: 'custom',
          message: `placeholder {${path}} must be an absolute element path like {/xml/MsgType} (optionally ending in /@attribute)`,
        });
      }
    }
    if (/[{}]/.test(template.replace(/\{[^}]*\}/g, ''))) {
      ctx.addIssue({ code: 'custom', message: 'has an unbalanced { or }' });
    }
  });

const routePath = z
  .string()
  .regex(
    /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/,
    'must start with / and contain only URL path characters',
  )
  .refine((s) => !s.includes('*'), 'wildcards are not supported: list each path');

const routeCommon = {
  path: routePath,
  /** Name used in metrics labels and logs; defaults to the path. */
  name: z
    .string()
    .regex(/^[A-Za-z0-9_./-]{1,64}$/)
    .optional(),
  forwardHeaders: z.array(forwardHeaderName).max(16).default([]),
  /** Partner ids allowed to call the route; absent: the route is open. */
  partners: z.array(z.string()).min(1).max(256).optional(),
};

const publishRoute = z.strictObject({
  ...routeCommon,
  mode: z.literal('publish'),
  exchange: z.string().max(255).default(''),
  routingKey: routingKeyTemplate,
  /** Delivery mode 2: the broker writes the message to disk before it confirms. */
  persistent: z.boolean().default(true),
  response: z
    .strictObject({
      status: int(200, 299).default(202),
      contentType: z.string().min(1).max(255).optional(),
      body: z.string().max(65536).default(''),
    })
    .optional(),
});

const rpcRoute = z.strictObject({
  ...routeCommon,
  mode: z.literal('rpc'),
  exchange: z.string().max(255).default(''),
  routingKey: routingKeyTemplate,
  timeoutMs: int(1, 600_000).default(5000),
  /** Transient by default: a request expires with its caller, and the reply proves delivery. */
  persistent: z.boolean().default(false),
  replyHeaders: z.array(headerName).max(32).default([]),
});

const celeryRoute = z.strictObject({
  ...routeCommon,
  mode: z.literal('celery'),
  task: z.string().min(1).max(255),
  queue: z.string().min(1).max(255).default('celery'),
  exchange: z.string().max(255).optional(),
  routingKey: z.string().max(255).optional(),
  wait: z.boolean().default(true),
  timeoutMs: int(1, 600_000).default(5000),
});

const route = z.discriminatedUnion('mode', [publishRoute, rpcRoute, celeryRoute]);

const exchangeDecl = z.strictObject({
  name: z.string().min(1).max(255),
  type: z.enum(['direct', 'topic', 'fanout', 'headers']),
  durable: z.boolean().default(true),
  autoDelete: z.boolean().default(false),
  internal: z.boolean().default(false),
  arguments: z.record(z.string(), z.unknown()).default({}),
});

const queueDecl = z.strictObject({
  name: z.string().min(1).max(255),
  durable: z.boolean().default(true),
  autoDelete: z.boolean().default(false),
  arguments: z.record(z.string(), z.unknown()).default({}),
});

const bindingDecl = z.strictObject({
  queue: z.string().min(1).max(255),
  exchange: z.string().min(1).max(255),
  routingKey: z.string().max(255).default(''),
  arguments: z.record(z.string(), z.unknown()).default({}),
});

/** A network in CIDR notation; parseCidr says exactly what is wrong with one that is not. */
const cidr = z.string().superRefine((text, ctx) => {
  try {
    parseCidr(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/*
 * Partner secrets arrive here already read from their `file:` references (config.ts refuses
 * inline values before this schema runs), so their checks never quote them.
 */
const apiKeySecret = z.string().regex(/^[\x21-\x7e]{16,512}$/, {
  message:
    'must be 16 to 512 printable characters without spaces; generate one with: openssl rand -hex 32',
});
const webhookSecret = z
  .string()
  .regex(/^whsec_(?=.{8,})[A-Za-z0-9+/]+={0,2}$/, {
    message:
      'must be a Standard Webhooks secret: whsec_ followed by base64 (at least 8 characters)',
  })
  .refine((s) => {
    const encoded = s.slice('whsec_'.length);
    return Buffer.from(encoded, 'base64').toString('base64') === encoded;
  }, 'is not canonical base64 after whsec_ (a stray or missing character?)');

const partnerAuth = z
  .strictObject({
    apiKey: z
      .strictObject({
        header: headerName.default('x-api-key'),
        /** Two keys while a rotation is under way. */
        keys: z.array(apiKeySecret).min(1).max(2),
      })
      .optional(),
    webhook: z
      .strictObject({
        secrets: z.array(webhookSecret).min(1).max(2),
        toleranceSeconds: int(1, 86_400).default(300),
      })
      .optional(),
    wechat: z
      .strictObject({
        // What WeChat's console accepts as a server token.
        token: z.string().regex(/^[A-Za-z0-9]{3,32}$/, {
          message: 'must be 3 to 32 letters or digits (what the WeChat console accepts)',
        }),
        toleranceSeconds: int(1, 86_400).default(300),
      })
      .optional(),
    clientCert: z
      .strictObject({
        /** nginx's $ssl_client_s_dn (RFC 2253), e.g. CN=acme-gateway,O=Acme. */
        subjects: z.array(z.string().min(1).max(1024)).min(1).max(64),
      })
      .optional(),
  })
  .superRefine((auth, ctx) => {
    const given = Object.entries(auth)
      .filter(([, v]) => v !== undefined)
      .map(([k]) => k);
    if (given.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message:
          given.length === 0
            ? 'needs one verifier: apiKey, webhook, wechat or clientCert'
            : `has ${given.join(' and ')}: give exactly one verifier per partner (a partner with two ways in is two partners)`,
      });
  });

const partner = z.strictObject({
  id: z.string().regex(/^[a-z0-9_-]{1,32}$/, {
    message:
      'must be 1 to 32 of a-z, 0-9, _ and - (it becomes the x-partner header and a metric label)',
  }),
  /** Allowed client addresses; absent: any. */
  sources: z.array(cidr).min(1).max(1024).optional(),
  auth: partnerAuth,
  /** For the partner over all workers; each worker enforces its share (token-bucket.ts). */
  rateLimit: z
    .strictObject({
      perSecond: int(1, 1_000_000),
      burst: int(1, 10_000_000).optional(),
    })
    .transform((r) => ({ perSecond: r.perSecond, burst: r.burst ?? r.perSecond }))
    .optional(),
});

const tlsSection = z
  .strictObject({
    /** PEM, the server certificate first, then its intermediates. Paths: tls-files.ts. */
    certFile: z.string().min(1),
    keyFile: z.string().min(1),
    /** The CAs a client certificate must chain to (clientCert: request). */
    caFile: z.string().min(1).optional(),
    clientCert: z.enum(['none', 'request', 'require']).default('none'),
  })
  .superRefine((t, ctx) => {
    if (t.clientCert === 'require')
      ctx.addIssue({
        code: 'custom',
        path: ['clientCert'],
        message:
          'require cannot be enforced by uWebSockets.js: it verifies a certificate a client presents, but cannot refuse a client that presents none. ' +
          'Use request (certificates that do not chain to caFile are refused in the handshake), or terminate TLS in nginx with ssl_verify_client on (README: "TLS through a reverse proxy")',
      });
    if (t.clientCert === 'request' && t.caFile === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['caFile'],
        message: 'is required with clientCert: request: the CAs client certificates must chain to',
      });
    if (t.clientCert === 'none' && t.caFile !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['caFile'],
        message:
          'is only used to verify client certificates; set clientCert: request, or remove caFile',
      });
  });

export const configSchema = z
  .strictObject({
    listen: hostPort.default('0.0.0.0:8080'),
    admin: hostPort.default('127.0.0.1:9464'),
    workers: z.union([z.literal('auto'), int(1, 256)]).default('auto'),
    shutdownTimeoutMs: int(100, 600_000).default(10_000),
    /** SIGHUP: a replacement worker not ready (listening, connected, topology asserted) by then abandons the reload. */
    reloadTimeoutMs: int(1000, 600_000).default(30_000),
    /** A worker that sends no state for this long (stuck event loop, SIGSTOP) is killed and replaced; it reports every second. */
    workerHangMs: int(3000, 600_000).default(15_000),
    /** Run on uWebSockets.js' pure-JS fallback when no native binary loads. */
    allowUwsFallback: z.boolean().default(false),
    /** Which uWebSockets.js build to load: auto = the newest whose binary loads on this host. */
    uwsBuild: z.enum(['auto', ...UWS_BUILD_IDS]).default('auto'),
    /** TLS on the partner port, served by uWebSockets.js itself (builds with SSL only). */
    tls: tlsSection.optional(),
    /**
     * Reverse proxies whose X-Real-IP / X-Forwarded-For name the client, and whose
     * X-Client-Verify / X-Client-Subject carry a verified client certificate.
     */
    trustedProxies: z.array(cidr).max(1024).default([]),
    partners: z.array(partner).max(1024).default([]),
    amqp: z
      .strictObject({
        /** Entries may be `file:NAME` secret references; config.ts replaces them by the file's URL before this schema runs. */
        urls: z.array(amqpUrl).min(1).default(['amqp://guest:guest@127.0.0.1:5672/']),
        heartbeatSeconds: int(0, 600).default(10),
        reconnectSeconds: z.number().min(0.1).max(600).default(2),
        maxInFlight: int(1, 1_000_000).default(10_000),
        confirmTimeoutMs: int(1, 600_000).default(5000),
        /**
         * Publishes waiting this long with no confirm arriving at all: the broker is stalled
         * (frozen, stuck disk); new requests get 503 at once and /readyz says so until a confirm
         * arrives. 0 turns the check off; unset, 2000 or half of confirmTimeoutMs if that is less.
         */
        stallMs: int(0, 600_000).optional(),
      })
      .refine((a) => a.stallMs === undefined || a.stallMs < a.confirmTimeoutMs, {
        message:
          'stallMs must be less than confirmTimeoutMs: publishes time out before a stall could be noticed',
        path: ['stallMs'],
      })
      .transform((a) => ({
        ...a,
        stallMs: a.stallMs ?? Math.min(DEFAULT_STALL_MS, Math.floor(a.confirmTimeoutMs / 2)),
      }))
      .prefault({}),
    topology: z
      .strictObject({
        exchanges: z.array(exchangeDecl).default([]),
        queues: z.array(queueDecl).default([]),
        bindings: z.array(bindingDecl).default([]),
      })
      .prefault({}),
    limits: z
      .strictObject({
        maxBodyBytes: int(1, 512 * 1024 * 1024).default(1_048_576),
        maxXmlDepth: int(1, 10_000).default(256),
        allowDoctype: z.boolean().default(false),
        requestTimeoutMs: int(100, 600_000).default(10_000),
        /** Largest value of a forwarded header; longer ones are refused with 400. */
        maxHeaderValueBytes: int(1, 4096).default(2048),
        /**
         * Per worker: bodies still streaming in; beyond it, 503. Counted apart from maxInFlight,
         * so slow uploads never take the slots of requests waiting on the broker.
         */
        maxUploads: int(1, 1_000_000).default(1000),
      })
      .prefault({}),
    logging: z
      .strictObject({
        level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
        /** Fraction of requests logged as `access` lines (0 = off, 1 = every request). */
        accessLogSampleRate: z.number().min(0).max(1).default(0),
        /** Per worker and second, at most this many access lines for answers other than 2xx (0 = off); the rest are counted. */
        errorAccessLogPerSecond: int(0, 100_000).default(20),
        /** Log request bodies (first 3 KiB, debug level). For debugging only: bodies carry partner data. */
        debugBodies: z.boolean().default(false),
      })
      .prefault({}),
    routes: z.array(route).min(1),
  })
  .superRefine(
    (config, ctx) => {
      // Runs even when some route failed validation (see `when`), so duplicates are reported
      // along with every other problem; routes that are not objects are skipped.
      const seenPaths = new Map<string, number>();
      const seenNames = new Map<string, number>();
      config.routes.forEach((r: unknown, i) => {
        if (typeof r !== 'object' || r === null) return;
        const { path, name } = r as { path?: unknown; name?: unknown }; // fields read defensively
        if (typeof path !== 'string') return;
        const firstPath = seenPaths.get(path);
        if (firstPath !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'path'],
            message: `duplicates routes[${firstPath}].path`,
          });
          return;
        }
        seenPaths.set(path, i);
        const label = typeof name === 'string' ? name : path;
        const firstName = seenNames.get(label);
        if (firstName !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'name'],
            message: `name "${label}" is also used by routes[${firstName}]`,
          });
        }
        seenNames.set(label, i);
      });
    },
    {
      when: (payload) => {
        const value: unknown = payload.value;
        return (
          typeof value === 'object' &&
          value !== null &&
          Array.isArray((value as { routes?: unknown }).routes)
        ); // narrowed just above
      },
    },
  )
  .superRefine(checkPartners);

/** Header names a partner's verifier reads: credentials that must never be copied onward. */
export function verifierHeaders(auth: {
  readonly apiKey?: { readonly header: string } | undefined;
  readonly webhook?: unknown;
  readonly clientCert?: unknown;
}): readonly string[] {
  if (auth.apiKey !== undefined) return [auth.apiKey.header];
  if (auth.webhook !== undefined) return ['webhook-id', 'webhook-timestamp', 'webhook-signature'];
  if (auth.clientCert !== undefined) return ['x-client-verify', 'x-client-subject'];
  return [];
}

/** Cross-references: partner ids unique and known to routes, and what each verifier needs. */
function checkPartners(
  config: {
    partners: ReadonlyArray<z.output<typeof partner>>;
    trustedProxies: readonly string[];
    routes: ReadonlyArray<{
      partners?: readonly string[] | undefined;
      forwardHeaders: readonly string[];
    }>;
  },
  ctx: z.RefinementCtx,
): void {
  const ids = new Map<string, number>();
  const credentialHeaders = new Map<string, string>();
  config.partners.forEach((p, i) => {
    const first = ids.get(p.id);
    if (first !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['partners', i, 'id'],
        message: `"${p.id}" is also the id of partners[${first}]`,
      });
    ids.set(p.id, i);
    if (p.auth.clientCert !== undefined && config.trustedProxies.length === 0)
      ctx.addIssue({
        code: 'custom',
        path: ['partners', i, 'auth', 'clientCert'],
        message:
          'needs trustedProxies: uWebSockets.js exposes no client certificate to the bridge, so the subject comes from ' +
          'the TLS-terminating proxy (nginx ssl_verify_client, X-Client-Verify / X-Client-Subject; README "Partners")',
      });
    for (const h of verifierHeaders(p.auth)) credentialHeaders.set(h, p.id);
  });
  config.routes.forEach((r, i) => {
    const seen = new Set<string>();
    r.partners?.forEach((id, j) => {
      if (!ids.has(id))
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'partners', j],
          message:
            ids.size === 0
              ? `"${id}" is not a partner: no partners are configured`
              : `"${id}" is not a partner; partners are: ${[...ids.keys()].join(', ')}`,
        });
      if (seen.has(id))
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'partners', j],
          message: `"${id}" is listed twice`,
        });
      seen.add(id);
    });
    r.forwardHeaders.forEach((h, j) => {
      const owner = credentialHeaders.get(h);
      if (owner !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'forwardHeaders', j],
          message: `${h} carries partner ${owner}'s credentials; the bridge verifies them and never copies them into messages (x-partner names the partner)`,
        });
    });
  });
}

export type ConfigInput = z.input<typeof configSchema>;
type Parsed = z.output<typeof configSchema>;

type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export type Config = DeepReadonly<Parsed>;
export type RouteConfig = Config['routes'][number];
export type PublishRouteConfig = Extract<RouteConfig, { mode: 'publish' }>;
export type RpcRouteConfig = Extract<RouteConfig, { mode: 'rpc' }>;
export type CeleryRouteConfig = Extract<RouteConfig, { mode: 'celery' }>;
export type PartnerConfig = Config['partners'][number];
export type PartnerAuthConfig = PartnerConfig['auth'];
