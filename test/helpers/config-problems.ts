/** The problems a ConfigError carries, for tests of config validation. */
import assert from 'node:assert/strict';
import { ConfigError, type ConfigProblem } from '../../src/shared/errors.js';

/** The problems `fn` reports by throwing a ConfigError; fails the test when it throws none. */
export function problemsOf(fn: () => unknown): readonly ConfigProblem[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected a ConfigError');
}
