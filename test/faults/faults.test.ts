/**
 * The fault suite (issue #11): under partner load, each fault of cases.ts against a bridge on a
 * private RabbitMQ node, and a ledger proving that no message answered 2xx was lost. FAULTS_SCALE
 * (default 1) lengthens the run for release checks (`npm run faults`).
 */
import { after, before, describe, it } from 'node:test';
import { startPrivateBroker } from '../helpers/private-broker.js';
import { CASES } from './cases.js';
import { runCase, SCALE, type FaultSuite } from './harness.js';
import { ledgerPath, markdownTable } from './ledger.js';

describe('fault suite: no 2xx is ever lost', { timeout: 600_000 * SCALE }, () => {
  let suite: FaultSuite | undefined;
  before(async () => {
    suite = {
      node: await startPrivateBroker('faults'),
      rows: [],
      startedAt: new Date().toISOString(),
    };
  });
  after(async () => {
    if (suite === undefined) return;
    await suite.node.stop();
    process.stderr.write(
      `\nFault ledger (FAULTS_SCALE=${SCALE}, also in ${ledgerPath()}):\n\n${markdownTable(suite.rows)}\n\n`,
    );
  });

  for (const spec of CASES) {
    it(spec.name, async (t) => {
      if (suite === undefined) throw new Error('the private node did not start');
      await runCase(suite, spec, t);
    });
  }
});
