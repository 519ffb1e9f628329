/** Slow partners for the fault suite: raw sockets that send a POST's body one byte per second, each with its own Idempotency-Key, every outcome kept. */
import { connect, type Socket } from 'node:net';
import { errorCode, type KeyedAnswer } from '../helpers/keyed-load.js';
import { xmlBody } from '../helpers/load.js';

export interface SlowFlood {
  /** Uploads whose connection is established and still trickling or waiting for an answer. */
  readonly open: () => number;
  /** Ends the flood: destroys what is still open (recorded as `ABORTED_BY_TEST`), resolves with every outcome. */
  stop(): Promise<readonly KeyedAnswer[]>;
}

/** The status of the first HTTP response in `text`, if its status line is complete. */
function statusOf(text: string): number | undefined {
  const m = /^HTTP\/1\.[01] (\d{3}) /.exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/**
 * Opens `count` connections to `port` on 127.0.0.1, each sending the headers of `POST path` at
 * once and then its body one byte every `byteIntervalMs` (default 1000).
 */
export function startSlowFlood(options: {
  readonly port: number;
  readonly path: string;
  readonly count: number;
  readonly idPrefix: string;
  readonly byteIntervalMs?: number;
}): SlowFlood {
  const answers: KeyedAnswer[] = [];
  const live = new Map<Socket, { readonly settle: (error: string | undefined) => void }>();
  const settledAll: Array<Promise<void>> = [];
  const pending: Array<{ socket: Socket; body: Buffer; sent: number }> = [];
  for (let i = 0; i < options.count; i++) {
    const key = `${options.idPrefix}-${i}`;
    const body = Buffer.from(xmlBody(key));
    const startedAt = performance.now();
    const socket = connect(options.port, '127.0.0.1');
    let received = '';
    let done = false;
    let resolveSettled: () => void = () => undefined;
    settledAll.push(new Promise<void>((resolve) => (resolveSettled = resolve)));
    const settle = (error: string | undefined): void => {
      if (done) return;
      done = true;
      live.delete(socket);
      const status = statusOf(received);
      answers.push({
        key,
        phase: 'slow',
        startedAt,
        endedAt: performance.now(),
        status,
        error: status === undefined ? (error ?? 'CLOSED_WITHOUT_ANSWER') : undefined,
        title: undefined,
      });
      socket.destroy();
      resolveSettled();
    };
    live.set(socket, { settle });
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      received += text;
      // One answer is all a slow client waits for.
      if (statusOf(received) !== undefined && received.includes('\r\n\r\n')) settle(undefined);
    });
    socket.on('error', (err) => settle(errorCode(err)));
    socket.on('close', () => settle(undefined));
    socket.on('connect', () => {
      socket.write(
        `POST ${options.path} HTTP/1.1\r\nHost: 127.0.0.1:${options.port}\r\n` +
          `Content-Type: application/xml\r\nContent-Length: ${body.byteLength}\r\n` +
          `Idempotency-Key: ${key}\r\n\r\n`,
      );
      pending.push({ socket, body, sent: 0 });
    });
  }
  const timer = setInterval(() => {
    for (const p of pending) {
      if (p.sent >= p.body.byteLength || !live.has(p.socket)) continue;
      p.socket.write(p.body.subarray(p.sent, p.sent + 1));
      p.sent += 1;
    }
  }, options.byteIntervalMs ?? 1000);
  return {
    open: () => live.size,
    stop: async () => {
      clearInterval(timer);
      for (const { settle } of [...live.values()]) settle('ABORTED_BY_TEST');
      await Promise.all(settledAll);
      return answers;
    },
  };
}
