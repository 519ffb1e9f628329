/**
 * Loads uWebSockets.js and tells whether its native binary loaded. The package silently falls
 * back to a slow JS server (different limits, crashes on req.getQuery(key); docs/failure-modes.md #9) when
 * the binary does not match this Node.js; only the native module exports getParts.
 */
import { createRequire } from 'node:module';
import type * as UwsModule from 'uWebSockets.js';

export type Uws = typeof UwsModule;

export interface LoadedUws {
  readonly uws: Uws;
  readonly native: boolean;
}

export function loadUws(): LoadedUws {
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as Uws; // a CJS module; its d.ts describes the native API
  return { uws, native: typeof (uws as { getParts?: unknown }).getParts === 'function' };
}
