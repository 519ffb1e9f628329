/**
 * Partner access control (CONTRACT "Partners"): who is calling, from where, how often. Built
 * once per config from the pure verifiers next to it; the HTTP layer asks it at the head (API
 * keys, WeChat signatures, client certificates, sources, rate limits, webhook freshness) and,
 * for Standard Webhooks, once the body is in -- in both cases before anything is published.
 *
 * Credentials are tried against every partner, not only the route's, so that a partner calling
 * a route it is not allowed on learns that (403) rather than being told its key is wrong (401).
 */
import { timingSafeEqual } from 'node:crypto';
import { CidrSet } from '../../shared/cidr.js';
import type { Config, PartnerConfig, RouteConfig } from '../../shared/config-schema.js';
import { BridgeError } from '../../shared/errors.js';
import type { AuthFailureReason } from '../../shared/types.js';
import type { HeaderList } from '../request.js';
import { ReplayGuard } from './replay-guard.js';
import { StandardWebhookVerifier } from './standard-webhooks.js';
import { TokenBucket } from './token-bucket.js';
import { verifyWechatSignature } from './wechat-signature.js';

/** Headers the gate reads; HeaderScan collects their values by position. */
const FIXED_HEADERS = [
  'x-real-ip',
  'x-forwarded-for',
  'x-client-verify',
  'x-client-subject',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
] as const;
const [REAL_IP, FORWARDED_FOR, CLIENT_VERIFY, CLIENT_SUBJECT, WEBHOOK_ID, WEBHOOK_TS, WEBHOOK_SIG] =
  [0, 1, 2, 3, 4, 5, 6] as const;

const REALM = 'Bearer realm="xml-amqp-bridge"';

/** Wall-clock time for signed timestamps, monotonic time for rate limits. */
export interface GateClock {
  readonly wallMs: () => number;
  readonly monotonicMs: () => number;
}

const SYSTEM_CLOCK: GateClock = { wallMs: () => Date.now(), monotonicMs: () => performance.now() };

interface Partner {
  readonly id: string;
  readonly config: PartnerConfig;
  readonly sources: CidrSet | undefined;
  readonly bucket: TokenBucket | undefined;
  readonly apiKeys: readonly Buffer[] | undefined;
  /** Position of the API key header among the gate's header names. */
  readonly apiKeyAt: number;
  readonly webhook: StandardWebhookVerifier | undefined;
  readonly replays: ReplayGuard | undefined;
  readonly subjects: ReadonlySet<string> | undefined;
}

/** What a route with partners allows, compiled with the route. */
export interface RouteAccess {
  readonly partners: ReadonlySet<string>;
  /** WeChat partners may call: the echostr GET handshake is answered. */
  readonly wechat: boolean;
  /** The 401 answer's extra headers (WWW-Authenticate when a partner uses Authorization). */
  readonly challenge: HeaderList;
  /** How to authenticate on this route, for 401 details. */
  readonly how: string;
}

/** A refusal, with what the metrics and access log need. */
export interface GateRefusal {
  readonly error: BridgeError;
  readonly headers: HeaderList;
  /** Undefined for 429 (counted as rate limited, not as an auth failure). */
  readonly reason: AuthFailureReason | undefined;
  /** The partner, when its credentials verified. */
  readonly partner: string | undefined;
}

/** The head passed; `webhook` set when the verdict waits for the body's signature. */
export interface GatePass {
  /** The client's address (from a trusted proxy's headers when the peer is one). */
  readonly client: string;
  readonly partner: string | undefined;
  readonly webhook: PendingWebhook | undefined;
}

export interface PendingWebhook {
  readonly id: string;
  readonly timestamp: string;
  readonly signature: string;
}

/** A webhook request that verified: forget its id again if the request does not succeed. */
export interface WebhookPass {
  readonly partner: string;
  readonly id: string;
  readonly forget: () => void;
}

function unauthorized(detail: string, reason: AuthFailureReason, access: RouteAccess): GateRefusal {
  return {
    error: new BridgeError('BRIDGE_UNAUTHORIZED', detail),
    headers: access.challenge,
    reason,
    partner: undefined,
  };
}

function constantTimeIncludes(keys: readonly Buffer[], offered: string): boolean {
  const candidate = Buffer.from(offered, 'utf8');
  let found = false;
  // Every key is compared, so the time does not say which one matched.
  for (const key of keys)
    if (key.length === candidate.length && timingSafeEqual(key, candidate)) found = true;
  return found;
}

export class PartnerGate {
  /** Header names whose values HeaderScan hands over, by position. */
  readonly headerNames: readonly string[];
  readonly #partners: readonly Partner[];
  readonly #trusted: CidrSet | undefined;
  readonly #byId: ReadonlyMap<string, Partner>;
  readonly #clock: GateClock;
  /**
   * The widest tolerance of any webhook partner (0: none), for the head's freshness check: which
   * partner signed is known only once the body is in.
   */
  readonly #webhookTolerance: number;
  /** Some partner uses the WeChat verifier: the query must be parsed for its signature. */
  readonly readsQuery: boolean;

  constructor(config: Config, workers: number, clock: GateClock = SYSTEM_CLOCK) {
    this.#clock = clock;
    this.readsQuery = config.partners.some((p) => p.auth.wechat !== undefined);
    const names: string[] = [...FIXED_HEADERS];
    this.#partners = config.partners.map((p) => {
      const { apiKey, webhook, clientCert } = p.auth;
      let apiKeyAt = -1;
      if (apiKey !== undefined) {
        apiKeyAt = names.indexOf(apiKey.header);
        if (apiKeyAt === -1) apiKeyAt = names.push(apiKey.header) - 1;
      }
      return {
        id: p.id,
        config: p,
        sources: p.sources === undefined ? undefined : new CidrSet(p.sources),
        bucket: p.rateLimit === undefined ? undefined : new TokenBucket(p.rateLimit, workers),
        apiKeys: apiKey?.keys.map((k) => Buffer.from(k, 'utf8')),
        apiKeyAt,
        webhook:
          webhook === undefined
            ? undefined
            : new StandardWebhookVerifier(webhook.secrets, webhook.toleranceSeconds),
        replays: webhook === undefined ? undefined : new ReplayGuard(webhook.toleranceSeconds),
        subjects: clientCert === undefined ? undefined : new Set(clientCert.subjects),
      };
    });
    this.headerNames = names;
    this.#webhookTolerance = Math.max(
      0,
      ...config.partners.map((p) => p.auth.webhook?.toleranceSeconds ?? 0),
    );
    this.#trusted =
      config.trustedProxies.length === 0 ? undefined : new CidrSet(config.trustedProxies);
    this.#byId = new Map(this.#partners.map((p) => [p.id, p]));
  }

  /** Whether requests need their headers collected at all (partners or trusted proxies set). */
  get active(): boolean {
    return this.#partners.length > 0 || this.#trusted !== undefined;
  }

  /** The route's access rules; undefined for an open route. */
  routeAccess(route: RouteConfig): RouteAccess | undefined {
    if (route.partners === undefined) return undefined;
    const partners = route.partners
      .map((id) => this.#byId.get(id))
      .filter((p): p is Partner => p !== undefined);
    const ways = new Set<string>();
    let bearer = false;
    for (const p of partners) {
      const { apiKey, webhook, wechat, clientCert } = p.config.auth;
      if (apiKey !== undefined) {
        bearer ||= apiKey.header === 'authorization';
        ways.add(
          apiKey.header === 'authorization'
            ? 'an API key as Authorization: Bearer <key>'
            : `an API key in the ${apiKey.header} header`,
        );
      }
      if (webhook !== undefined)
        ways.add(
          'a Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature)',
        );
      if (wechat !== undefined)
        ways.add('a WeChat signature (signature, timestamp and nonce in the query)');
      if (clientCert !== undefined)
        ways.add('a client certificate (through the TLS-terminating proxy)');
    }
    return {
      partners: new Set(partners.map((p) => p.id)),
      wechat: partners.some((p) => p.config.auth.wechat !== undefined),
      challenge: bearer ? [['WWW-Authenticate', REALM]] : [],
      how: [...ways].join(', or '),
    };
  }

  /**
   * The client's address: the peer's, unless the peer is a trusted proxy, then X-Real-IP, else
   * the last X-Forwarded-For entry (the one the proxy itself appended).
   */
  clientAddress(peer: string, headers: ReadonlyArray<string | undefined>): string {
    if (this.#trusted === undefined || !this.#trusted.has(peer)) return peer;
    const realIp = headers[REAL_IP]?.trim();
    if (realIp !== undefined && realIp !== '') return realIp;
    const forwarded = headers[FORWARDED_FOR];
    if (forwarded === undefined) return peer;
    const last = forwarded.slice(forwarded.lastIndexOf(',') + 1).trim();
    return last === '' ? peer : last;
  }

  /**
   * Everything that can be decided before the body: who the partner is (or that a webhook
   * signature will tell), whether it may call this route from this address, and its rate.
   */
  checkHead(
    access: RouteAccess,
    peer: string,
    headers: ReadonlyArray<string | undefined>,
    query: URLSearchParams | undefined,
  ): GatePass | GateRefusal {
    const nowMs = this.#clock.wallMs();
    const client = this.clientAddress(peer, headers);
    const trustedPeer = client !== peer || (this.#trusted?.has(peer) ?? false);
    let offered = false;
    let expired: string | undefined;
    for (const p of this.#partners) {
      const { auth } = p.config;
      if (p.apiKeys !== undefined) {
        let value = headers[p.apiKeyAt];
        if (value === undefined) continue;
        // Partners send a key in Authorization as `Bearer <key>` (RFC 6750) or bare.
        if (auth.apiKey?.header === 'authorization' && /^bearer /i.test(value))
          value = value.slice(7).trim();
        offered = true;
        if (constantTimeIncludes(p.apiKeys, value)) return this.#admit(p, access, client);
      } else if (auth.wechat !== undefined && query !== undefined) {
        const signature = query.get('signature') ?? undefined;
        if (signature === undefined) continue;
        offered = true;
        const timestamp = query.get('timestamp') ?? undefined;
        const verdict = verifyWechatSignature(auth.wechat.token, {
          signature,
          timestamp,
          nonce: query.get('nonce') ?? undefined,
        });
        if (!verdict.ok) continue;
        const skew = Math.abs(nowMs / 1000 - Number(timestamp));
        if (!(skew <= auth.wechat.toleranceSeconds)) {
          expired = `the timestamp is ${Number.isFinite(skew) ? `${Math.round(skew)} s` : 'not a number of seconds'} away from the bridge's clock; at most ${auth.wechat.toleranceSeconds} s are accepted`;
          continue;
        }
        return this.#admit(p, access, client);
      } else if (p.subjects !== undefined && trustedPeer) {
        const subject = headers[CLIENT_SUBJECT];
        if (subject === undefined || subject === '') continue;
        offered = true;
        if (headers[CLIENT_VERIFY] === 'SUCCESS' && p.subjects.has(subject))
          return this.#admit(p, access, client);
      }
    }
    const id = headers[WEBHOOK_ID];
    const timestamp = headers[WEBHOOK_TS];
    const signature = headers[WEBHOOK_SIG];
    const webhookHeaders =
      (id === undefined ? 0 : 1) +
      (timestamp === undefined ? 0 : 1) +
      (signature === undefined ? 0 : 1);
    if (
      id !== undefined &&
      timestamp !== undefined &&
      signature !== undefined &&
      this.#webhookTolerance > 0
    ) {
      const early = this.#webhookHead(timestamp, nowMs, access);
      if (early !== undefined) return early;
      return { client, partner: undefined, webhook: { id, timestamp, signature } };
    }
    if (expired !== undefined)
      return unauthorized(`${expired}; sign with the current time`, 'expired', access);
    if (offered || webhookHeaders === 3)
      return unauthorized(
        `the credentials did not verify: this route takes ${access.how}`,
        'wrong',
        access,
      );
    if (webhookHeaders > 0)
      return unauthorized(
        'a Standard Webhooks request needs all of webhook-id, webhook-timestamp and webhook-signature',
        'malformed',
        access,
      );
    return unauthorized(`this route needs partner credentials: ${access.how}`, 'missing', access);
  }

  /** The webhook timestamp's form and freshness, checked before the body is read. */
  #webhookHead(timestamp: string, nowMs: number, access: RouteAccess): GateRefusal | undefined {
    if (!/^[0-9]{1,15}$/.test(timestamp))
      return unauthorized(
        'webhook-timestamp must be the signing time in whole seconds since the Unix epoch',
        'malformed',
        access,
      );
    const tolerance = this.#webhookTolerance;
    const skew = Math.abs(nowMs / 1000 - Number(timestamp));
    if (skew > tolerance)
      return unauthorized(
        `webhook-timestamp is ${Math.round(skew)} s away from the bridge's clock; at most ${tolerance} s are accepted: sign with the current time`,
        'expired',
        access,
      );
    return undefined;
  }

  /** The Standard Webhooks signature over the body as received, then the partner's rules. */
  checkWebhook(
    access: RouteAccess,
    client: string,
    pending: PendingWebhook,
    body: Buffer,
  ): WebhookPass | GateRefusal {
    const nowSeconds = Math.floor(this.#clock.wallMs() / 1000);
    let reason: 'malformed' | 'expired' | 'wrong' = 'wrong';
    for (const p of this.#partners) {
      if (p.webhook === undefined) continue;
      const verdict = p.webhook.verify(pending, body, nowSeconds);
      if (!verdict.ok) {
        if (verdict.reason === 'malformed') reason = 'malformed';
        else if (verdict.reason === 'expired' && reason === 'wrong') reason = 'expired';
        continue;
      }
      const refused = this.#admit(p, access, client);
      if ('error' in refused) return refused;
      const replays = p.replays as ReplayGuard; // set with every webhook verifier
      if (replays.seen(pending.id, nowSeconds))
        return {
          error: new BridgeError(
            'BRIDGE_UNAUTHORIZED',
            `webhook-id ${pending.id} was already accepted; nothing was published again (its message_id is that id)`,
          ),
          headers: access.challenge,
          reason: 'replayed',
          partner: p.id,
        };
      return { partner: p.id, id: pending.id, forget: () => replays.forget(pending.id) };
    }
    const detail =
      reason === 'malformed'
        ? 'webhook-signature must hold one or more space-separated "v1,<base64 HMAC-SHA256>" entries'
        : reason === 'expired'
          ? "webhook-timestamp is outside the partner's tolerance: sign with the current time"
          : 'the webhook signature did not verify: sign webhook-id.webhook-timestamp.body, the body exactly as sent, with the current secret';
    return unauthorized(detail, reason, access);
  }

  /** A verified partner: allowed on the route, from this address, within its rate. */
  #admit(p: Partner, access: RouteAccess, client: string): GatePass | GateRefusal {
    if (!access.partners.has(p.id))
      return {
        error: new BridgeError('BRIDGE_FORBIDDEN', `partner ${p.id} is not allowed on this route`),
        headers: [],
        reason: 'route',
        partner: p.id,
      };
    if (p.sources !== undefined && !p.sources.has(client))
      return {
        error: new BridgeError(
          'BRIDGE_FORBIDDEN',
          `partner ${p.id} may not call from ${client}: the address is not in its sources`,
        ),
        headers: [],
        reason: 'source',
        partner: p.id,
      };
    const taken = p.bucket?.take(this.#clock.monotonicMs());
    if (taken !== undefined && !taken.ok)
      return {
        error: new BridgeError(
          'BRIDGE_RATE_LIMITED',
          `partner ${p.id} is over its rate limit of ${p.config.rateLimit?.perSecond ?? 0} requests/s; retry after ${taken.retryAfterSeconds} s`,
        ),
        headers: [['Retry-After', String(taken.retryAfterSeconds)]],
        reason: undefined,
        partner: p.id,
      };
    return { client, partner: p.id, webhook: undefined };
  }

  /** The WeChat echostr handshake: whether the query's signature verifies for a partner of the route. */
  checkHandshake(access: RouteAccess, query: URLSearchParams): boolean {
    const nowMs = this.#clock.wallMs();
    for (const id of access.partners) {
      const wechat = this.#byId.get(id)?.config.auth.wechat;
      if (wechat === undefined) continue;
      const timestamp = query.get('timestamp') ?? undefined;
      const verdict = verifyWechatSignature(wechat.token, {
        signature: query.get('signature') ?? undefined,
        timestamp,
        nonce: query.get('nonce') ?? undefined,
      });
      if (verdict.ok && Math.abs(nowMs / 1000 - Number(timestamp)) <= wechat.toleranceSeconds)
        return true;
    }
    return false;
  }
}
