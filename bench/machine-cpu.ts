/**
 * CPU time from /proc, for telling a benchmark's own CPU from what else ran on the machine
 * during a run (USER_HZ is 100 on Linux).
 */
import { readFileSync } from 'node:fs';

/** CPU seconds the whole machine has been busy (all cores; /proc/stat). */
export function machineBusySeconds(): number {
  const [user, nice, system, , , irq, softirq, steal] = (
    readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
  )
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (
    ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / 100
  );
}

/** CPU seconds of this process and of its children that ended (wrk, the raw publisher). */
export function ownSeconds(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100; // utime stime cutime cstime
}
