/**
 * The route table, compiled once per config: exact path → route with its derived values
 * (routing-key template, lower-cased forward headers, the success response).
 */
import type { Config, RouteConfig } from '../../shared/config-schema.js';
import { compileTemplate, type CompiledTemplate } from '../xml/extract.js';
import type { HeaderList } from './respond.js';

export interface CompiledRoute {
  readonly config: RouteConfig;
  /** Metrics label and log name. */
  readonly name: string;
  /** Routing-key template for publish/rpc routes; a constant for celery routes. */
  readonly routingKey: CompiledTemplate;
  readonly extractPaths: readonly string[];
  readonly success: { readonly status: number; readonly headers: HeaderList; readonly body: string };
}

export const ALLOWED_METHODS = 'POST';

function compileRoute(route: RouteConfig): CompiledRoute {
  const routingKey = compileTemplate(route.mode === 'celery' ? (route.routingKey ?? route.queue) : route.routingKey);
  const response = route.mode === 'publish' ? route.response : undefined;
  const headers: Array<readonly [string, string]> = [];
  if (response?.contentType !== undefined) headers.push(['Content-Type', response.contentType]);
  return {
    config: route,
    name: route.name ?? route.path,
    routingKey,
    extractPaths: routingKey.paths,
    success: { status: response?.status ?? 202, headers, body: response?.body ?? '' },
  };
}

export class RouteTable {
  readonly #byPath: ReadonlyMap<string, CompiledRoute>;

  constructor(config: Config) {
    this.#byPath = new Map(config.routes.map((r) => [r.path, compileRoute(r)]));
  }

  match(path: string): CompiledRoute | undefined {
    return this.#byPath.get(path);
  }

  get routes(): readonly CompiledRoute[] {
    return [...this.#byPath.values()];
  }
}
