/**
 * Guards the one-way import rules: primary and worker share only src/shared and talk over IPC;
 * inside the worker, HTTP sits on top (http → modes → amqp/xml → the request contract), so
 * nothing below it knows about HTTP.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { PROJECT_ROOT } from '../helpers/bridge.js';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sourceFiles(path.join(dir, e.name))
      : e.name.endsWith('.ts')
        ? [path.join(dir, e.name)]
        : [],
  );
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm)].map(
    (m) => m[1] ?? '',
  );
}

describe('source layout', () => {
  const src = path.join(PROJECT_ROOT, 'src');
  const roots = ['primary', 'worker', 'shared'] as const;

  it('finds the three roots', () => {
    for (const r of roots)
      assert.ok(sourceFiles(path.join(src, r)).length > 0, `src/${r} has sources`);
  });

  for (const [from, forbidden] of [
    ['primary', ['worker']],
    ['worker', ['primary']],
    ['shared', ['primary', 'worker']],
  ] as const) {
    it(`src/${from} imports nothing from ${forbidden.join(' or ')}`, () => {
      for (const file of sourceFiles(path.join(src, from))) {
        for (const spec of importsOf(file)) {
          if (!spec.startsWith('.')) continue;
          const target = path.relative(src, path.resolve(path.dirname(file), spec));
          const top = target.split(path.sep)[0] ?? '';
          assert.ok(
            !(forbidden as readonly string[]).includes(top),
            `${path.relative(PROJECT_ROOT, file)} imports ${spec}`,
          );
        }
      }
    });
  }

  const worker = path.join(src, 'worker');
  for (const below of ['modes', 'amqp', 'xml']) {
    it(`src/worker/${below} imports nothing from src/worker/http`, () => {
      for (const file of sourceFiles(path.join(worker, below))) {
        for (const spec of importsOf(file)) {
          if (!spec.startsWith('.')) continue;
          const target = path.relative(worker, path.resolve(path.dirname(file), spec));
          assert.ok(
            !target.startsWith(`http${path.sep}`),
            `${path.relative(PROJECT_ROOT, file)} imports ${spec}`,
          );
        }
      }
    });
  }

  it('src/worker/request.ts, the request contract, depends on nothing but shared types and the XML summary', () => {
    const file = path.join(worker, 'request.ts');
    for (const spec of importsOf(file)) {
      assert.ok(
        spec.startsWith('../shared/') || spec === './xml/check.js',
        `request.ts imports ${spec}`,
      );
    }
  });
});
