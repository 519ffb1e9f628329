/**
 * The uWS app: one catch-all handler, listen and stop-listening.
 * Every worker listens on the same port with SO_REUSEPORT (uWS's default), so the kernel spreads
 * new connections over the workers. With `tls`, an SSLApp: uWS terminates TLS itself (builds with
 * SSL only; the primary refuses `tls` on the others), and the handler sees the same requests.
 */
import type {
  AppOptions,
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  us_listen_socket,
} from 'uWebSockets.js';
import type { TlsSection } from '../../shared/tls-files.js';
import { BridgeError } from '../../shared/errors.js';
import { renderProblem, writeResponse } from './render.js';
import type { Uws } from '../../shared/uws.js';

/**
 * uSockets loads the files itself (paths, not PEM text), so a renewed certificate is read by the
 * workers a SIGHUP reload forks. A caFile makes it verify client certificates (SSL_VERIFY_PEER):
 * one that does not chain to it fails the handshake; a client sending none is still served,
 * which is why the schema refuses `clientCert: require`.
 */
function sslOptions(tls: TlsSection): AppOptions {
  return {
    cert_file_name: tls.certFile,
    key_file_name: tls.keyFile,
    ...(tls.clientCert === 'request' && tls.caFile !== undefined
      ? { ca_file_name: tls.caFile }
      : {}),
  };
}

export class HttpServer {
  readonly #app: TemplatedApp;
  readonly #uws: Uws;
  #listenSocket: us_listen_socket | undefined;

  constructor(
    uws: Uws,
    tls: TlsSection | undefined,
    handler: (res: HttpResponse, req: HttpRequest) => void,
    onBug: (err: unknown) => void,
  ) {
    this.#uws = uws;
    const app = tls === undefined ? uws.App() : uws.SSLApp(sslOptions(tls));
    this.#app = app.any('/*', (res, req) => {
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
