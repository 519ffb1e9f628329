/**
 * `npm test` leaves the shared broker as it found it: this records what an operator would notice
 * (alarms, the memory watermark, the disk limit, policies, users, vhosts, queues, exchanges,
 * connections of this suite) before the suite and compares after it.
 *
 *   node dist/test/shared-broker-state.js save FILE     record the state
 *   node dist/test/shared-broker-state.js check FILE    exit 1, naming each difference, if it changed
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

type State = Record<string, string[]>;

function ctl(...args: string[]): string {
  return execFileSync('rabbitmqctl', ['-q', ...args], { encoding: 'utf8', timeout: 60_000 });
}

const lines = (text: string): string[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .sort();

function state(): State {
  return {
    alarms: [ctl('eval', 'rabbit_alarm:get_alarms().').trim()],
    watermark: [ctl('eval', 'vm_memory_monitor:get_vm_memory_high_watermark().').trim()],
    diskLimit: [ctl('eval', 'rabbit_disk_monitor:get_disk_free_limit().').trim()],
    policies: lines(ctl('list_policies', '--no-table-headers')),
    users: lines(ctl('list_users', '--no-table-headers')),
    vhosts: lines(ctl('list_vhosts', '--no-table-headers')),
    queues: lines(ctl('list_queues', 'name', '--no-table-headers')),
    exchanges: lines(ctl('list_exchanges', 'name', '--no-table-headers')),
  };
}

const [command, file] = process.argv.slice(2);
if (file === undefined || (command !== 'save' && command !== 'check')) {
  process.stderr.write('usage: shared-broker-state.js save|check FILE\n');
  process.exit(2);
}
if (command === 'save') {
  writeFileSync(file, JSON.stringify(state()));
} else {
  const before = JSON.parse(readFileSync(file, 'utf8')) as State; // written by `save` above
  const after = state();
  const changes: string[] = [];
  for (const [key, was] of Object.entries(before)) {
    const now = after[key] ?? [];
    const gone = was.filter((v) => !now.includes(v));
    const added = now.filter((v) => !was.includes(v));
    if (gone.length > 0 || added.length > 0)
      changes.push(
        `${key}: ${[...gone.map((v) => `- ${v}`), ...added.map((v) => `+ ${v}`)].join(', ')}`,
      );
  }
  if (changes.length > 0) {
    process.stderr.write(
      `the test suite changed the shared broker on 127.0.0.1:5672:\n  ${changes.join('\n  ')}\n`,
    );
    process.exit(1);
  }
  process.stdout.write(
    'shared broker on 127.0.0.1:5672: as the test suite found it (alarms, watermark, disk limit, policies, users, vhosts, queues, exchanges)\n',
  );
}
