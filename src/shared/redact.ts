/** Scrubs credentials out of AMQP URLs before they reach a log line or an error message. */

/** `amqp://user:secret@host/` → `amqp://user:***@host/`; text without a URL is returned as is. */
export function redactUrl(url: string): string {
  return url.replace(/(amqps?:\/\/[^:/@\s]*):[^@\s]*@/g, '$1:***@');
}
