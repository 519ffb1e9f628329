/**
 * Sends every AMQP frame produced in one event-loop turn as one socket write.
 *
 * amqplib's mux writes each frame to the socket separately on a setImmediate; with noDelay that
 * is one TCP segment per publish, which cost the broker 5-35% more CPU per message than a bursty
 * publisher (PERFORMANCE.md). Corking the socket for the turn and uncorking after the mux has run
 * coalesced them and brought the bridge to the raw publisher's rate.
 */
import { Socket } from 'node:net';
import type { ChannelModel } from 'amqplib';

/** The TCP socket under an amqplib connection, when amqplib still keeps it where we expect. */
export function socketOf(model: ChannelModel): Socket | undefined {
  // amqplib's typings hide the transport; its Connection object keeps it as `stream`.
  const stream = (model.connection as unknown as { stream?: unknown }).stream;
  return stream instanceof Socket ? stream : undefined;
}

export class WriteCoalescer {
  #held = false;
  readonly #socket: Socket;

  private constructor(socket: Socket) {
    this.#socket = socket;
    // A corked socket fills its 16 KiB buffer after a dozen messages; amqplib's mux then waits
    // for 'drain' and writes the rest from there, one syscall per frame. Holding again before
    // the mux's own drain listener runs keeps those writes batched too.
    socket.prependListener('drain', () => this.hold());
  }

  /** A coalescer for the socket, or undefined when there is none to hold (writes go out as-is). */
  static forSocket(socket: Socket | undefined): WriteCoalescer | undefined {
    return socket ? new WriteCoalescer(socket) : undefined;
  }

  /**
   * Holds writes until the end of this turn. Call right AFTER a publish: amqplib queues its
   * flush as nextTick (the channel stream turning readable) → setImmediate; our release is
   * queued as nextTick → setImmediate behind it, so the frames of every publish in this turn
   * land in the corked socket and leave in one writev. Called before the publish, the release
   * would run first and nothing would be coalesced (covered by test/integration/publisher).
   */
  hold(): void {
    if (this.#held) return;
    this.#held = true;
    this.#socket.cork();
    process.nextTick(() =>
      setImmediate(() => {
        this.#held = false;
        this.#socket.uncork();
      }),
    );
  }
}
