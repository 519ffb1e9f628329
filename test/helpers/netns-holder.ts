/**
 * The process that holds a namespace of netns.ts's startNetns: inside it, relays 127.0.0.1:5672
 * to the shared broker through the unix socket named by argv[2], prints one JSON line
 * `{"type":"ready","pid":N}` and stays until it is stopped. Import nothing from it: loading it
 * runs it.
 */
import { tcpToUnix } from './netns.js';

const socket = process.argv[2];
if (socket === undefined) throw new TypeError('usage: netns-holder.js AMQP_SOCKET');
const relay = await tcpToUnix(5672, socket);
process.stdout.write(`${JSON.stringify({ type: 'ready', pid: process.pid })}\n`);
const stop = (): void => {
  void relay.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
