/**
 * Pure: reads a V8 `.cpuprofile` (what `node --cpu-prof` writes) and splits the samples taken in a
 * time window over the stages of the bridge's request path, by the leaf-most frame that belongs
 * to a stage (a sample in `Buffer.from` called from the body intake counts as body intake).
 */

/** The stages of one request, in the order a request meets them. */
export const STAGES = [
  'native: uWS HTTP, sockets, libuv',
  'request head: routing, headers, admission',
  'body intake',
  'XML check',
  'message building',
  'AMQP frames: encoding and writes',
  'confirm and reply handling',
  'metrics',
  'response',
  'timers, promises, ticks',
  'garbage collection',
  'other JS',
] as const;

export type Stage = (typeof STAGES)[number];

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

/** The parts of the `.cpuprofile` JSON this module reads. */
export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  /** Microseconds on the monotonic clock (CLOCK_MONOTONIC, as `process.hrtime`). */
  readonly startTime: number;
  readonly samples: readonly number[];
  /** Microseconds since the previous sample. */
  readonly timeDeltas: readonly number[];
}

const AMQPLIB = '/node_modules/amqplib/lib/';
const WORKER = '/src/worker/';

/** Which stage a frame alone belongs to, or undefined when its caller decides. */
function stageOfFrame(frame: CallFrame): Stage | undefined {
  const { url, functionName: fn } = frame;
  switch (fn) {
    case '(program)':
      return 'native: uWS HTTP, sockets, libuv';
    case '(garbage collector)':
      return 'garbage collection';
    case '(idle)':
    case '(root)':
      return undefined;
    default:
  }
  if (
    url.includes('/node_modules/saxes/') ||
    url.includes('/node_modules/xmlchars/') ||
    url.includes(`${WORKER}xml/`)
  )
    return 'XML check';
  if (url.includes('/node_modules/prom-client/') || url.includes(`${WORKER}metrics`))
    return 'metrics';
  if (url.includes(AMQPLIB)) {
    // Anonymous closures (e.g. the confirm callbacks) belong to whoever called them.
    if (fn === '') return undefined;
    return /^(encode|make|send|write|publish|pushConfirmCallback|_readIncoming|roundrobin|_scheduleRead)/.test(
      fn,
    )
      ? 'AMQP frames: encoding and writes'
      : 'confirm and reply handling';
  }
  if (url.includes('/node_modules/amqp-connection-manager/')) return 'confirm and reply handling';
  if (url.includes(WORKER)) {
    const file = url.slice(url.indexOf(WORKER) + WORKER.length);
    if (/^http\/(exchange|request)\.js$/.test(file))
      return /^(respond|writeCorked)$/.test(fn) ? 'response' : 'body intake';
    if (/^http\/body\.js$/.test(file)) return 'body intake';
    if (/^http\/(respond|render)/.test(file)) return 'response';
    if (file.startsWith('http/') || /^(admission|active-requests|routes|deadline-queue)/.test(file))
      return 'request head: routing, headers, admission';
    if (/^amqp\/(frames|frame-writer|field-table|write-coalescer|wire)/.test(file))
      return 'AMQP frames: encoding and writes';
    if (/^amqp\/(message|celery)/.test(file) || file.startsWith('modes/'))
      return 'message building';
    if (file.startsWith('amqp/')) return 'confirm and reply handling';
    if (file.startsWith('metrics') || file.startsWith('request.js')) return 'metrics';
    return 'other JS';
  }
  if (
    url.startsWith('node:internal/timers') ||
    url.startsWith('node:internal/process/task_queues') ||
    fn === 'runMicrotasks'
  ) {
    return 'timers, promises, ticks';
  }
  return undefined;
}

export interface StageSplit {
  /** Samples (not idle) per stage in the window. */
  readonly samples: ReadonlyMap<Stage, number>;
  readonly busySamples: number;
  readonly idleSamples: number;
  /** Samples of the whole profile (to tell a window that missed the profile). */
  readonly totalSamples: number;
}

/**
 * Counts the samples taken between `fromUs` and `toUs` (monotonic microseconds) by stage.
 * A sample whose whole stack matches no rule counts as 'other JS'.
 */
export function splitByStage(profile: CpuProfile, fromUs: number, toUs: number): StageSplit {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const memo = new Map<number, Stage | 'idle'>();
  const stageOf = (id: number): Stage | 'idle' => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id);
    let stage: Stage | 'idle';
    if (node === undefined) stage = 'other JS';
    else if (node.callFrame.functionName === '(idle)') stage = 'idle';
    else {
      const own = stageOfFrame(node.callFrame);
      const up = parent.get(id);
      stage = own ?? (up === undefined ? 'other JS' : stageOf(up));
      if (stage === 'idle') stage = 'other JS';
    }
    memo.set(id, stage);
    return stage;
  };
  const samples = new Map<Stage, number>(STAGES.map((s) => [s, 0]));
  let t = profile.startTime;
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < fromUs || t > toUs) continue;
    const stage = stageOf(profile.samples[i] ?? -1);
    if (stage === 'idle') {
      idle += 1;
      continue;
    }
    busy += 1;
    samples.set(stage, (samples.get(stage) ?? 0) + 1);
  }
  return { samples, busySamples: busy, idleSamples: idle, totalSamples: profile.samples.length };
}

/** Adds the splits of several processes (the workers of one run). */
export function mergeSplits(splits: readonly StageSplit[]): StageSplit {
  const samples = new Map<Stage, number>(STAGES.map((s) => [s, 0]));
  for (const split of splits)
    for (const [stage, n] of split.samples) samples.set(stage, (samples.get(stage) ?? 0) + n);
  return {
    samples,
    busySamples: splits.reduce((s, x) => s + x.busySamples, 0),
    idleSamples: splits.reduce((s, x) => s + x.idleSamples, 0),
    totalSamples: splits.reduce((s, x) => s + x.totalSamples, 0),
  };
}

export function isCpuProfile(value: unknown): value is CpuProfile {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>; // narrowed field by field below
  return (
    Array.isArray(v['nodes']) &&
    Array.isArray(v['samples']) &&
    Array.isArray(v['timeDeltas']) &&
    typeof v['startTime'] === 'number'
  );
}
