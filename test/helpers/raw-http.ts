/**
 * A raw HTTP/1.1 client connection for tests of framing and pipelining: writes exactly the bytes
 * given and parses the responses that come back (status, headers, Content-Length bodies), in
 * order, so a test sees what a partner's own HTTP stack would see, including a silent close.
 */
import { connect, type Socket } from 'node:net';
import { waitUntil } from './poll.js';

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface RawConnection {
  /** Resolves once the bytes are handed to the kernel. */
  write(bytes: string | Buffer): Promise<void>;
  /** Final responses parsed so far, in the order they arrived (grows); 1xx are left out. */
  readonly responses: readonly RawResponse[];
  /** Resolves once `n` responses arrived; rejects when the connection closes first or after timeoutMs. */
  responsesArrived(n: number, timeoutMs?: number): Promise<readonly RawResponse[]>;
  /** Resolves when the server closed the connection (or it failed). */
  readonly closed: Promise<void>;
  readonly isClosed: () => boolean;
  destroy(): void;
}

export async function openRaw(port: number, host = '127.0.0.1'): Promise<RawConnection> {
  const socket: Socket = connect(port, host);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let pending = Buffer.alloc(0);
  const responses: RawResponse[] = [];
  let isClosed = false;
  const closed = new Promise<void>((resolve) => {
    socket.once('close', () => {
      isClosed = true;
      resolve();
    });
  });
  socket.on('error', () => undefined); // a reset counts as a close; `closed` tells the test
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = pending.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0] ?? '')?.[1] ?? NaN);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':');
        headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      // 1xx answers (100 Continue) are interim: they have no body and precede the real one.
      const length = status < 200 ? 0 : Number(headers['content-length'] ?? 0);
      if (pending.length < end + 4 + length) return;
      if (status >= 200) {
        responses.push({
          status,
          headers,
          body: pending.subarray(end + 4, end + 4 + length).toString('utf8'),
        });
      }
      pending = pending.subarray(end + 4 + length);
    }
  });
  return {
    write: (bytes) =>
      new Promise<void>((resolve, reject) =>
        socket.write(bytes, (err) => (err ? reject(err) : resolve())),
      ),
    responses,
    responsesArrived: async (n, timeoutMs = 10_000) => {
      await waitUntil(
        `${n} responses`,
        () => ({ got: responses.length, closed: isClosed }),
        (s) => {
          if (s.got >= n) return true;
          if (s.closed) throw new Error(`connection closed after ${s.got} of ${n} responses`);
          return false;
        },
        { timeoutMs, intervalMs: 5 },
      );
      return responses;
    },
    closed,
    isClosed: () => isClosed,
    destroy: () => socket.destroy(),
  };
}

/** A POST of `body` to `path` with the headers given (Host and Content-Type added unless present). */
export function rawPost(path: string, body: string, headers: readonly string[] = []): string {
  const has = (name: string): boolean =>
    headers.some((h) => h.toLowerCase().startsWith(`${name}:`));
  const lines = [
    `POST ${path} HTTP/1.1`,
    ...(has('host') ? [] : ['Host: bridge.test']),
    ...(has('content-type') ? [] : ['Content-Type: application/xml']),
    ...(has('content-length') || has('transfer-encoding')
      ? []
      : [`Content-Length: ${Buffer.byteLength(body)}`]),
    ...headers,
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
