#!/usr/bin/env node
/**
 * The `killswitch` command (docs/spec.md#9-command-line): argument parsing, config loading, signals, exit
 * codes. Usage and config errors: a one-line message per problem on stderr, exit 2, never a stack trace.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from './config/config.js';
import { KillSwitchError } from './core/errors.js';
import { createLogger } from './adapters/log/logger.js';
import { replay } from './commands/replay.js';
import { checkInputs, runEmbedded } from './commands/run-embedded.js';
import { runAuthz } from './commands/authz.js';
import { generateToken } from './commands/tokens.js';
import { operatorAction, operatorBlocks, operatorStatus, operatorToken } from './commands/operator.js';
import { generateKeys, SIGNING_KEY_FILE } from './commands/keys.js';
import { loadJwks, loadSigningKey } from './adapters/signing/keys.js';
import { signingSetup } from './commands/signing.js';
import { verify } from './commands/verify.js';
import { commandHelp, COMMANDS, USAGE, usageError } from './commands/usage.js';
import { loadTokensFile } from './commands/tokens.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

type ParsedArgs = { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>, command: string): ParsedArgs {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs's own messages quote unevenly and explain `--`; say what is wrong in our words
    const e = err as { code?: string; message: string };
    const option = /'(-[^ ']+)/.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option !== undefined) throw usageError(`${command}: unknown option ${option}`, command);
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option !== undefined) throw usageError(`${command}: ${option} needs a value`, command);
    throw usageError(`${command}: ${e.message}`, command);
  }
}

function requireString(values: Record<string, unknown>, name: string, command: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw usageError(`${command}: --${name} is required`, command);
  return v;
}

/** `--help` or `-h` among a command's arguments (before a `--` that ends the options). */
function asksForHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/**
 * What `run` would refuse at start beyond the config file itself: the signing key (present, readable,
 * a key), the trusted keys, the token file. `--check-config` runs it, so a config it calls valid starts.
 */
function preflight(config: Config): void {
  signingSetup(config, { requireKey: true });
  if (config.signing?.jwks_file !== undefined) loadJwks(config.signing.jwks_file);
  if (config.http?.tokens_file !== undefined) loadTokensFile(config.http.tokens_file);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `keys --help`, `keys generate -h`, `run --help`: the command's help, whatever else is there
  const helpFor = command === 'keys' || command === 'tokens' ? `${command} generate` : command;
  if (helpFor !== undefined && helpFor in COMMANDS && asksForHelp(rest)) {
    process.stdout.write(commandHelp(helpFor));
    return 0;
  }
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
        'schema-only': { type: 'boolean' },
      }, 'run');
      const configFile = requireString(values, 'config', 'run');
      if (values['schema-only'] === true && values['check-config'] !== true) throw usageError('run: --schema-only goes with --check-config', 'run');
      const config = loadConfig(configFile);
      if (values['check-config'] === true) {
        if (values['schema-only'] !== true) {
          preflight(config);
          if (config.kafka === undefined) checkInputs(positionals);
        }
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
      }, 'replay');
      const config = loadConfig(requireString(values, 'config', 'replay'));
      const key = values.key;
      // Without --key the documents are unsigned (docs/spec.md#9-command-line), whatever the config says.
      const signer = typeof key === 'string' ? signingSetup(config, { requireKey: false, keyFileOverride: key }).signer : undefined;
      const addenda = values.addenda;
      return replay({ config, inputs: positionals, addendaFile: typeof addenda === 'string' ? addenda : undefined, signer });
    }
    case 'verify': {
      const { values, positionals } = parse(rest, { jwks: { type: 'string' }, decisions: { type: 'string' } }, 'verify');
      const jwks = requireString(values, 'jwks', 'verify');
      if (positionals.length !== 1) throw usageError('verify: name exactly one ADDENDA file', 'verify');
      const decisions = values.decisions;
      return verify(jwks, positionals[0]!, typeof decisions === 'string' ? decisions : undefined);
    }
    case 'keys': {
      const [sub, ...args] = rest;
      if (sub !== 'generate') throw usageError('keys: the only subcommand is "generate"', 'keys generate');
      const { values, positionals } = parse(args, { out: { type: 'string' }, 'if-missing': { type: 'boolean' } }, 'keys generate');
      if (positionals.length > 0) throw usageError(`keys generate: unexpected argument "${positionals[0]}"`, 'keys generate');
      const out = requireString(values, 'out', 'keys generate');
      if (values['if-missing'] === true && existsSync(join(out, SIGNING_KEY_FILE))) {
        process.stdout.write(`signing key ${loadSigningKey(join(out, SIGNING_KEY_FILE)).kid} already in ${out}\n`);
        return 0;
      }
      const g = generateKeys(out);
      process.stdout.write(`signing key ${g.kid}\n  private key: ${g.privateKeyFile} (mode 0600)\n  trusted keys: ${g.jwksFile} (${g.trustedKeys})\n` +
        (g.retired === undefined ? '' : `  previous key kept as ${g.retired}; its public key stays trusted\n`));
      return 0;
    }
    case 'tokens': {
      const [sub, ...args] = rest;
      if (sub !== 'generate') throw usageError('tokens: the only subcommand is "generate"', 'tokens generate');
      const { values, positionals } = parse(args, { out: { type: 'string' }, name: { type: 'string' }, roles: { type: 'string' }, 'if-missing': { type: 'boolean' } }, 'tokens generate');
      if (positionals.length > 0) throw usageError(`tokens generate: unexpected argument "${positionals[0]}"`, 'tokens generate');
      const g = generateToken(requireString(values, 'out', 'tokens generate'), requireString(values, 'name', 'tokens generate'),
        requireString(values, 'roles', 'tokens generate').split(',').map((r) => r.trim()).filter((r) => r !== ''), values['if-missing'] === true);
      process.stdout.write(g.created
        ? `operator API token written to ${g.tokenFile} (mode 0600); its SHA-256 and roles to ${g.tokensFile} (http.tokens_file)\n`
        : `operator API token already in ${g.tokenFile}\n`);
      return 0;
    }
    case 'block':
    case 'unblock':
    case 'status':
    case 'blocks': {
      const { values, positionals } = parse(rest, {
        url: { type: 'string' }, 'token-file': { type: 'string' }, reason: { type: 'string' }, by: { type: 'string' }, json: { type: 'boolean' },
      }, command);
      const tokenFile = values['token-file'];
      const url = typeof values.url === 'string' ? values.url : process.env.KILLSWITCH_URL ?? 'http://127.0.0.1:8080';
      try {
        new URL(url);
      } catch {
        throw usageError(`${command}: --url ${url} is not a URL`, command);
      }
      const o = { url, token: operatorToken(typeof tokenFile === 'string' ? tokenFile : undefined, process.env), json: values.json === true, out: process.stdout };
      if (command === 'blocks') {
        if (positionals.length > 0) throw usageError(`blocks: unexpected argument "${positionals[0]}"`, 'blocks');
        return operatorBlocks(o);
      }
      if (positionals.length !== 1) throw usageError(`${command}: name exactly one AGENT_ID`, command);
      const agentId = positionals[0]!;
      if (command === 'status') return operatorStatus(o, agentId);
      return operatorAction(o, command, agentId, requireString(values, 'reason', command), requireString(values, 'by', command));
    }
    case 'authz': {
      const { values, positionals } = parse(rest, { config: { type: 'string' } }, 'authz');
      if (positionals.length > 0) throw usageError(`authz: unexpected argument "${positionals[0]}"`, 'authz');
      const config = loadConfig(requireString(values, 'config', 'authz'));
      // the public keys are enough; the private key is read only when no JWKS is configured
      const trusted = config.signing?.jwks_file !== undefined ? loadJwks(config.signing.jwks_file) : signingSetup(config, { requireKey: false }).trusted;
      const code = await runAuthz(config, trusted, createLogger(config.log.level));
      // a Kafka client that did not let go of a socket must not keep a stopped endpoint alive
      setTimeout(() => process.exit(code), 2000).unref();
      return code;
    }
    default:
      throw usageError(`unknown command "${command}"`);
  }
}

async function run(config: Config, configFile: string, inputs: string[]): Promise<number> {
  const log = createLogger(config.log.level);
  const signing = signingSetup(config, { requireKey: true });
  if (signing.signer === undefined && config.kill_switch.enabled) {
    log.warn({ allow_unsigned: true }, 'signing.allow_unsigned is set: kill events and addenda are NOT signed; session guards and regulators cannot tell them from forgeries');
  }
  if (config.kafka !== undefined) {
    if (inputs.length > 0) throw usageError('run: INPUT files are for embedded mode; in Kafka mode decisions come from the decisions topic', 'run');
    // Loaded here: the Kafka mode's modules are not needed by replay, embedded runs, verify or keys.
    const { runKafka } = await import('./commands/run-kafka.js');
    const code = await runKafka(config, signing.signer, signing.trusted, log);
    // A client library that did not let go of a socket must not keep a stopped service alive.
    setTimeout(() => process.exit(code), 2000).unref();
    return code;
  }
  return runEmbedded({ config, configFile, inputs, signer: signing.signer, trusted: signing.trusted, log, out: process.stdout });
}

/** Usage and configuration errors (a key file is configuration) exit 2; failures while running exit 1. */
const EXIT_2 = new Set<string>(['CONFIG_INVALID', 'USAGE', 'INPUT_UNREADABLE', 'KEY_INVALID', 'SIGNING_REQUIRED']);

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
  process.exitCode = EXIT_2.has(err.code) ? 2 : 1;
}
