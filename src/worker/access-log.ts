/**
 * The `access` log lines: a sampled share of all requests (`accessLogSampleRate`), and every
 * answer other than 2xx up to `errorAccessLogPerSecond` per worker and second, so a refused
 * partner can be found by its address, method and path without a flood of lines drowning the
 * journal; what the limit held back is counted in one line per second. No body, no query string,
 * no header value: the reason is the problem code and title, never its detail (which can quote
 * the body).
 */
import { XmlError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { RequestRecord } from './request.js';

export interface AccessLogOptions {
  readonly accessLogSampleRate: number;
  readonly errorAccessLogPerSecond: number;
}

export function accessLog(log: Logger, options: AccessLogOptions): (r: RequestRecord) => void {
  const { accessLogSampleRate: sampleRate, errorAccessLogPerSecond: perSecond } = options;
  let windowStart = -Infinity;
  let logged = 0;
  let heldBack = 0;
  /** Reports what the window held back once it ends (a timer only while something was). */
  const report = (): void => {
    if (heldBack > 0)
      log.warn('access lines held back', { count: heldBack, errorAccessLogPerSecond: perSecond });
    heldBack = 0;
  };
  const errorLineAllowed = (now: number): boolean => {
    if (now - windowStart >= 1000) {
      windowStart = now;
      logged = 0;
    }
    if (logged < perSecond) {
      logged += 1;
      return true;
    }
    if (heldBack === 0) setTimeout(report, Math.max(0, windowStart + 1000 - now)).unref();
    heldBack += 1;
    return false;
  };
  return (r) => {
    const failed = r.status < 200 || r.status >= 300;
    const write = failed
      ? perSecond > 0 && errorLineAllowed(performance.now())
      : sampleRate > 0 && Math.random() < sampleRate;
    if (!write) return;
    const err = r.error;
    const fields = {
      requestId: r.requestId,
      route: r.route,
      status: r.status,
      ms: Math.round(r.seconds * 10_000) / 10,
      bytes: r.bodyBytes,
      method: r.method,
      path: r.path,
      client: r.client,
      ...(r.partner === undefined ? {} : { partner: r.partner }),
      ...(err === undefined
        ? {}
        : {
            code: err.code,
            reason: err instanceof XmlError ? `${err.title} (${err.reason})` : err.title,
          }),
    };
    if (r.status >= 500) log.warn('access', fields);
    else log.info('access', fields);
  };
}
