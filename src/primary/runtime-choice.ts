/**
 * Which uWebSockets.js build serves, decided once by the primary (its workers load the same), and
 * whether the config asks for something that build cannot do. Used at start, by `check-config`
 * and before a SIGHUP reload.
 */
import type { Config } from '../shared/config-schema.js';
import {
  describeRefusals,
  loadChosenUws,
  loadNativeUws,
  type UwsBuild,
  type UwsRefusal,
} from '../shared/uws.js';

export interface Runtime {
  readonly build: UwsBuild;
  /** Newer builds that did not load here, and why (logged at start). */
  readonly refusals: readonly UwsRefusal[];
}

export type RuntimeChoice =
  | { readonly ok: true; readonly runtime: Runtime }
  | { readonly ok: false; readonly message: string };

export function chooseRuntime(
  config: Config,
  allowFallback: boolean,
  forceFallback = false,
): RuntimeChoice {
  if (forceFallback) {
    if (!allowFallback)
      return {
        ok: false,
        message:
          'UWS_USE_FALLBACK asks for the JS fallback instead of a uWebSockets.js native binary; refusing it. ' +
          'allowUwsFallback: true (or BRIDGE_ALLOW_UWS_FALLBACK=1) runs it anyway (development only)',
      };
    const fallback = loadChosenUws('js-fallback');
    if (fallback === undefined) return { ok: false, message: 'the JS fallback did not load' };
    return { ok: true, runtime: { build: fallback.build, refusals: [] } };
  }
  const { loaded, refusals } = loadNativeUws(config.uwsBuild);
  if (loaded !== undefined) return { ok: true, runtime: { build: loaded.build, refusals } };
  const asked =
    config.uwsBuild === 'auto' ? 'no uWebSockets.js build' : `uwsBuild ${config.uwsBuild}`;
  if (!allowFallback)
    return {
      ok: false,
      message:
        `${asked} loads on this host (${describeRefusals(refusals)}); refusing the slow JS fallback. ` +
        'See the README, "Supported platforms", for the Node.js and glibc each build needs; ' +
        'allowUwsFallback: true (or BRIDGE_ALLOW_UWS_FALLBACK=1) runs the JS fallback anyway (development only)',
    };
  const fallback = loadChosenUws('js-fallback');
  if (fallback === undefined) return { ok: false, message: 'the JS fallback did not load' };
  return { ok: true, runtime: { build: fallback.build, refusals } };
}

/** Why this runtime cannot serve the config's `tls` section, or undefined if it can. */
export function tlsRefusal(config: Config, runtime: Runtime): string | undefined {
  if (config.tls === undefined || runtime.build.ssl) return undefined;
  const newer = runtime.refusals.find((r) => r.id === '20.57');
  const why =
    newer === undefined ? '' : ` (the 20.57 build, which has TLS, does not load: ${newer.reason})`;
  return (
    `the uWebSockets.js build serving here (${runtime.build.package}) has no TLS${why}. ` +
    'Terminate TLS in a reverse proxy (README: "TLS through a reverse proxy", a tested nginx config in deploy/nginx/), ' +
    'or run where the 20.57 build loads (Node.js 20, 22 or 24 on glibc 2.38 or later: README, "Supported platforms")'
  );
}

/** Why a reload from `current` to `next` cannot be done beside the running workers. */
export function reloadTlsRefusal(current: Config, next: Config): string | undefined {
  if (next.listen !== current.listen) return undefined;
  if ((current.tls === undefined) === (next.tls === undefined)) return undefined;
  return (
    `turning TLS ${next.tls === undefined ? 'off' : 'on'} changes what the partner port speaks, and old and new ` +
    'workers share the port during a reload, so partners would meet both: restart instead (or move listen as well)'
  );
}
