/**
 * The route table, compiled once per config: exact path → route with every value derived from
 * its config (metrics label, routing-key template and the element paths it reads, the message
 * template, Celery's exchange and routing key, the success response), so a request computes none
 * of them.
 */
import { hostname } from 'node:os';
import { verifierHeaders } from '../shared/config-schema.js';
import { CREDENTIAL_HEADERS } from '../shared/redact.js';
import type {
  CeleryRouteConfig,
  Config,
  PublishRouteConfig,
  RouteConfig,
  RpcRouteConfig,
} from '../shared/config-schema.js';
import { celeryDestination, celeryTemplate } from './amqp/celery.js';
import type { PublishTemplate } from './amqp/frames.js';
import { routeTemplate } from './amqp/message.js';
import type { PartnerGate, RouteAccess } from './partners/gate.js';
import type { HeaderList } from './request.js';
import { compileTemplate, type CompiledTemplate } from './xml/extract.js';
import { compilePaths, type CompiledPaths } from './xml/paths.js';

interface RouteBase {
  /** Metrics label and log name: `name`, else the path. */
  readonly name: string;
  readonly path: string;
  /** Lower-cased names of the request headers copied into the message. */
  readonly forwardHeaders: readonly string[];
  /** What the XML check extracts from the body (the routing key's placeholders). */
  readonly paths: CompiledPaths | undefined;
  readonly template: PublishTemplate;
  /** Who may call; undefined: the route is open. */
  readonly access: RouteAccess | undefined;
}

export interface CompiledPublishRoute extends RouteBase {
  readonly mode: 'publish';
  readonly config: PublishRouteConfig;
  readonly routingKey: CompiledTemplate;
  readonly success: {
    readonly status: number;
    readonly headers: HeaderList;
    readonly body: string;
  };
}

export interface CompiledRpcRoute extends RouteBase {
  readonly mode: 'rpc';
  readonly config: RpcRouteConfig;
  readonly routingKey: CompiledTemplate;
}

export interface CompiledCeleryRoute extends RouteBase {
  readonly mode: 'celery';
  readonly config: CeleryRouteConfig;
  readonly routingKey: string;
}

export type CompiledRoute = CompiledPublishRoute | CompiledRpcRoute | CompiledCeleryRoute;

/** Celery's `origin` header: who sent the task (what send_task writes: gen<pid>@<host>). */
const CELERY_ORIGIN = `gen${process.pid}@${hostname()}`;

function compileRoute(route: RouteConfig, gate: PartnerGate): CompiledRoute {
  const base = (template: PublishTemplate, extract: readonly string[]): RouteBase => ({
    name: route.name ?? route.path,
    path: route.path,
    forwardHeaders: route.forwardHeaders,
    paths: extract.length === 0 ? undefined : compilePaths(extract),
    template,
    access: gate.routeAccess(route),
  });
  switch (route.mode) {
    case 'publish': {
      const routingKey = compileTemplate(route.routingKey);
      const headers: Array<readonly [string, string]> = [];
      if (route.response?.contentType !== undefined)
        headers.push(['Content-Type', route.response.contentType]);
      return {
        ...base(routeTemplate(route), routingKey.paths),
        mode: 'publish',
        config: route,
        routingKey,
        success: {
          status: route.response?.status ?? 202,
          headers,
          body: route.response?.body ?? '',
        },
      };
    }
    case 'rpc': {
      const routingKey = compileTemplate(route.routingKey);
      return {
        ...base(routeTemplate(route), routingKey.paths),
        mode: 'rpc',
        config: route,
        routingKey,
      };
    }
    case 'celery':
      return {
        ...base(celeryTemplate(route, CELERY_ORIGIN), []),
        mode: 'celery',
        config: route,
        routingKey: celeryDestination(route).routingKey,
      };
    default: {
      const never: never = route;
      throw new TypeError(`unknown route mode ${String(never)}`);
    }
  }
}

export class RouteTable {
  readonly #byPath: ReadonlyMap<string, CompiledRoute>;
  readonly gate: PartnerGate;
  /** Headers never copied into a Celery task's headers argument: every credential the bridge reads. */
  readonly hiddenHeaders: ReadonlySet<string>;

  constructor(config: Config, gate: PartnerGate) {
    this.gate = gate;
    this.hiddenHeaders = new Set([
      ...CREDENTIAL_HEADERS,
      ...config.partners.flatMap((p) => verifierHeaders(p.auth)),
    ]);
    this.#byPath = new Map(config.routes.map((r) => [r.path, compileRoute(r, gate)]));
  }

  match(path: string): CompiledRoute | undefined {
    return this.#byPath.get(path);
  }

  get routes(): readonly CompiledRoute[] {
    return [...this.#byPath.values()];
  }
}
