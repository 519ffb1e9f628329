/**
 * sd_notify for Type=notify units: READY=1 once every worker is ready (what /readyz reports),
 * RELOADING=1 / READY=1 around a SIGHUP roll, STOPPING=1 on shutdown. Node has no unix datagram
 * sockets, so the messages go through systemd's own `systemd-notify` tool; the unit therefore
 * sets NotifyAccess=all. Without NOTIFY_SOCKET (not under systemd) every call is a no-op.
 */
import { execFile } from 'node:child_process';

export type NotifyState = 'READY=1' | 'RELOADING=1' | 'STOPPING=1';

export class SystemdNotifier {
  readonly #enabled: boolean;
  readonly #onError: (err: unknown) => void;

  constructor(notifySocket: string | undefined, onError: (err: unknown) => void) {
    this.#enabled = notifySocket !== undefined;
    this.#onError = onError;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  notify(state: NotifyState, status?: string): void {
    if (!this.#enabled) return;
    const args = [`--pid=${process.pid}`, state];
    if (status !== undefined) args.push(`STATUS=${status}`);
    if (state === 'RELOADING=1') {
      // systemd >= 253 requires the monotonic timestamp with RELOADING=1; older ones ignore it.
      args.push(`MONOTONIC_USEC=${Math.floor(Number(process.hrtime.bigint() / 1000n))}`);
    }
    execFile('systemd-notify', args, { timeout: 5000 }, (err) => {
      if (err) this.#onError(err);
    });
  }
}
