/**
 * CLUSTER_SCALE (default 1): the longer cluster run multiplies fault durations and the rounds of
 * the rolling restart by it. Imported first by cluster.test.ts: it hands the scale on to the fault
 * harness (FAULTS_SCALE, read when harness.ts is loaded) unless that is set, so the warm-up counts
 * and the ledger's `scale` column follow it too.
 */
export const CLUSTER_SCALE = ((): number => {
  const raw = process.env['CLUSTER_SCALE'] ?? '1';
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 1)
    throw new RangeError(`CLUSTER_SCALE must be a number ≥ 1, not ${raw}`);
  return n;
})();

if ((process.env['FAULTS_SCALE'] ?? '') === '') process.env['FAULTS_SCALE'] = String(CLUSTER_SCALE);
