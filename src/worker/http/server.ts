/**
 * The uWS app: one catch-all handler, listen and stop-listening.
 * Every worker listens on the same port with SO_REUSEPORT (uWS's default), so the kernel spreads
 * new connections over the workers.
 */
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { BridgeError } from '../../shared/errors.js';
import { renderProblem, writeResponse } from './render.js';
import type { Uws } from '../../shared/uws.js';

export class HttpServer {
  readonly #app: TemplatedApp;
  readonly #uws: Uws;
  #listenSocket: us_listen_socket | undefined;

  constructor(
    uws: Uws,
    handler: (res: HttpResponse, req: HttpRequest) => void,
    onBug: (err: unknown) => void,
  ) {
    this.#uws = uws;
    this.#app = uws.App().any('/*', (res, req) => {
      try {
        handler(res, req);
      } catch (err) {
        // A throw escaping a uWS handler aborts the whole process (docs/failure-modes.md #7): answer 500.
        onBug(err);
        try {
          writeResponse(
            res,
            renderProblem(new BridgeError('BRIDGE_INTERNAL', 'internal error'), 'unknown'),
            'unknown',
            undefined,
            true,
          );
        } catch {
          // the response had been written already; nothing more to do
        }
      }
    });
  }

  /** Resolves with the bound port, or rejects if the port could not be bound. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#app.listen(host, port, (socket) => {
        if (socket === false) {
          reject(new Error(`cannot listen on ${host}:${port}`));
          return;
        }
        this.#listenSocket = socket;
        resolve(this.#uws.us_socket_local_port(socket));
      });
    });
  }

  /** Stops accepting new connections; open ones keep being served. */
  stopListening(): void {
    if (this.#listenSocket === undefined) return;
    this.#uws.us_listen_socket_close(this.#listenSocket);
    this.#listenSocket = undefined;
  }

  /** Force-closes every connection (after the drain deadline). */
  close(): void {
    this.stopListening();
    const app = this.#app as TemplatedApp & { close?: () => void }; // present in this build, not in its d.ts
    app.close?.();
  }
}
