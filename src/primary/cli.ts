/** Command-line parsing: `--config FILE` (or BRIDGE_CONFIG), `check-config FILE`, `--version`, `--help`. */

export type Command =
  | { readonly kind: 'run'; readonly configFile: string | undefined; readonly takeover: boolean }
  | { readonly kind: 'check-config'; readonly configFile: string; readonly broker: boolean }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'usage-error'; readonly message: string };

export const USAGE = `Usage:
  xml-amqp-bridge --config FILE        run the bridge (or set BRIDGE_CONFIG=FILE)
      [--takeover]                     share the port with the running instance being upgraded
                                       (skips the check that refuses a port already in use)
  xml-amqp-bridge check-config [--broker] FILE
                                       validate FILE: exit 0, or list every problem and exit 2;
                                       --broker also asks the broker (passively) whether every
                                       exchange and queue FILE names exists: exit 3 if not
  xml-amqp-bridge --version            print the bridge, Node.js and uWebSockets.js versions
  xml-amqp-bridge --help

Environment overrides: BRIDGE_LISTEN (host:port), BRIDGE_ADMIN_LISTEN (host:port),
BRIDGE_WORKERS (number or auto), BRIDGE_AMQP_URLS (comma separated, tried in order).
`;

export function parseArgs(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  if (first === 'check-config') {
    const broker = rest.includes('--broker');
    const files = rest.filter((a) => a !== '--broker');
    const file = files[0];
    if (file === undefined || files.length > 1 || file.startsWith('-'))
      return { kind: 'usage-error', message: 'check-config takes [--broker] and exactly one FILE' };
    return { kind: 'check-config', configFile: file, broker };
  }
  let configFile: string | undefined;
  let takeover = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return { kind: 'help' };
    if (arg === '--version' || arg === '-V') return { kind: 'version' };
    if (arg === '--takeover') {
      takeover = true;
      continue;
    }
    if (arg === '--config' || arg === '-c') {
      const value = argv[i + 1];
      if (value === undefined) return { kind: 'usage-error', message: `${arg} needs a FILE` };
      configFile = value;
      i++;
    } else if (arg?.startsWith('--config=')) {
      configFile = arg.slice('--config='.length);
    } else {
      return { kind: 'usage-error', message: `unknown argument: ${arg}` };
    }
  }
  return { kind: 'run', configFile, takeover };
}
