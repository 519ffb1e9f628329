/**
 * What a valid partner configuration may still get wrong, said at start and on reload: routes
 * anyone can call while partners are configured, and rate limits the worker count makes looser.
 */
import type { Config } from '../shared/config-schema.js';

export interface PartnerWarning {
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

export function partnerWarnings(config: Config, workers: number): PartnerWarning[] {
  if (config.partners.length === 0) return [];
  const warnings: PartnerWarning[] = [];
  const open = config.routes.filter((r) => r.partners === undefined).map((r) => r.path);
  if (open.length > 0)
    warnings.push({
      msg: 'routes without partners are open to anyone who reaches the port',
      fields: { routes: open },
    });
  for (const p of config.partners) {
    const limit = p.rateLimit;
    // token-bucket.ts: every worker keeps at least one token of burst.
    if (limit !== undefined && limit.burst < workers)
      warnings.push({
        msg: 'rate limit burst is below the worker count: each worker allows 1, so the total burst is the worker count',
        fields: { partner: p.id, burst: limit.burst, workers },
      });
  }
  return warnings;
}
