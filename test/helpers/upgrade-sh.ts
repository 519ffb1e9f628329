/** The argv of deploy/upgrade.sh as the tests run it: this checkout is the release. */
import path from 'node:path';
import { PROJECT_ROOT } from './bridge.js';

const UPGRADE_SH = path.join(PROJECT_ROOT, 'deploy', 'upgrade.sh');

/** Upgrades the instance `pid` to this checkout with `config`, the new one's admin on `admin`; `more` follows. */
export function upgradeArgv(
  pid: number,
  config: string,
  admin: string,
  more: readonly string[] = [],
): string[] {
  return [
    UPGRADE_SH,
    '--pid',
    String(pid),
    '--release',
    PROJECT_ROOT,
    '--config',
    config,
    '--admin',
    admin,
    ...more,
  ];
}
