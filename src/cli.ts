#!/usr/bin/env node
/**
 * The `killswitch` command (CONTRACTS.md section 7): argument parsing, config loading, signals, exit
 * codes. Usage and config errors: a one-line message per problem on stderr, exit 2, never a stack trace.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from './config/config.js';
import { KillSwitchError } from './core/errors.js';
import { createLogger } from './adapters/log/logger.js';
import { replay } from './commands/replay.js';
import { runEmbedded } from './commands/run-embedded.js';
import { USAGE, usageError } from './commands/usage.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

type ParsedArgs = { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>): ParsedArgs {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError((err as Error).message);
  }
}

function requireString(values: Record<string, unknown>, name: string, command: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw usageError(`${command}: --${name} is required`);
  return v;
}

function notYet(command: string): never {
  throw usageError(`${command}: not available in this version yet`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 2 : 0;
    case '--version':
      process.stdout.write(version() + '\n');
      return 0;
    case 'run': {
      const { values, positionals } = parse(rest, {
        config: { type: 'string' },
        'check-config': { type: 'boolean' },
      });
      const configFile = requireString(values, 'config', 'run');
      const config = loadConfig(configFile);
      if (values['check-config'] === true) {
        process.stdout.write(`${configFile}: configuration is valid\n`);
        return 0;
      }
      return run(config, configFile, positionals);
    }
    case 'replay': {
      const { values, positionals } = parse(rest, {
        config: { type: 'string' },
        key: { type: 'string' },
        addenda: { type: 'string' },
      });
      const config = loadConfig(requireString(values, 'config', 'replay'));
      if (values.key !== undefined) notYet('replay --key (signing)');
      const addenda = values.addenda;
      return replay({ config, inputs: positionals, addendaFile: typeof addenda === 'string' ? addenda : undefined, signer: undefined });
    }
    case 'verify':
    case 'authz':
    case 'keys':
      return notYet(command);
    default:
      throw usageError(`unknown command "${command}" (try: killswitch --help)`);
  }
}

async function run(config: Config, configFile: string, inputs: string[]): Promise<number> {
  if (config.kafka !== undefined) notYet('run with a kafka section (Kafka mode)');
  if (config.http !== undefined) notYet('run with an http section (HTTP API and ingest)');
  const log = createLogger(config.log.level);
  return runEmbedded({ config, configFile, inputs, signer: undefined, log, out: process.stdout });
}

process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // A closed pipe (`killswitch replay ... | head`) is the reader's choice, not our failure.
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof KillSwitchError)) throw err;
  // Config errors are `path: message` lines, one per problem; anything else is one line.
  const lines = err.details.length > 0 ? err.details : [`killswitch: ${err.message}`];
  process.stderr.write(lines.map((l) => `${l}\n`).join(''));
  process.exitCode = err.code === 'CONFIG_INVALID' || err.code === 'USAGE' || err.code === 'INPUT_UNREADABLE' ? 2 : 1;
}
