/** Runs the route's mode once the body is in: resolves with what to answer, or rejects with a BridgeError. */
import type { ModeResult } from '../request.js';
import type { CompiledCeleryRoute, CompiledPublishRoute, CompiledRpcRoute } from '../routes.js';
import { runCelery } from './celery.js';
import type { ModeDeps, ModeRequest } from './mode.js';
import { runPublish } from './publish.js';
import { runRpc } from './rpc.js';

export function runMode(req: ModeRequest, deps: ModeDeps): Promise<ModeResult> {
  // Each cast restates what the switch on req.route.mode established (TS does not narrow the container).
  const route = req.route;
  switch (route.mode) {
    case 'publish':
      return runPublish(req as ModeRequest<CompiledPublishRoute>, deps);
    case 'rpc':
      return runRpc(req as ModeRequest<CompiledRpcRoute>, deps);
    case 'celery':
      return runCelery(req as ModeRequest<CompiledCeleryRoute>, deps);
    default: {
      const never: never = route;
      throw new TypeError(`unknown mode ${String(never)}`);
    }
  }
}
