/**
 * What `killswitch --help` and `killswitch <command> --help` print (docs/spec.md#9-command-line). The
 * options are parsed with node:util's parseArgs; the help is this table rather than an argument
 * library's generated text, so every command keeps one example and the wording of the spec.
 */
import { KillSwitchError } from '../core/errors.js';

interface CommandHelp {
  readonly usage: string;
  readonly summary: string;
  readonly options: readonly (readonly [string, string])[];
  readonly example: string;
}

const OPERATOR_OPTIONS: readonly (readonly [string, string])[] = [
  ['--url URL', 'the operator API (default: KILLSWITCH_URL, else http://127.0.0.1:8080)'],
  ['--token-file FILE', 'the bearer token (default: KILLSWITCH_TOKEN)'],
  ['--json', 'print the API\'s JSON answer instead of text'],
];

export const COMMANDS: Readonly<Record<string, CommandHelp>> = {
  run: {
    usage: 'killswitch run --config FILE [--check-config [--schema-only]] [INPUT ...]',
    summary: 'Run the service: Kafka mode when the config has a kafka section, embedded mode otherwise (decisions from the INPUT NDJSON files, - for stdin, and POST /v1/decisions when http is configured).',
    options: [['--config FILE', 'the configuration (YAML or JSON)'], ['--check-config', 'check the configuration and everything it names (keys, token file, listen addresses), print the problems, exit 0 or 2'],
      ['--schema-only', 'with --check-config: the file alone, not the files it names (for CI without the deployment\'s secrets)']],
    example: 'killswitch run --config examples/service.yaml examples/decisions.ndjson',
  },
  replay: {
    usage: 'killswitch replay --config FILE [--key KEYFILE] [--addenda OUT] [INPUT ...]',
    summary: 'Re-run the trip rule over NDJSON decisions (stdin if no INPUT): kill events to stdout in input order, bad lines to stderr with file and line.',
    options: [['--config FILE', 'the trip rule (kill_switch section)'], ['--key KEYFILE', 'sign the documents (unsigned without it)'], ['--addenda OUT', 'write the addenda to OUT']],
    example: 'killswitch replay --config examples/service.yaml examples/decisions.ndjson',
  },
  verify: {
    usage: 'killswitch verify --jwks FILE [--decisions FILE] ADDENDA',
    summary: 'Check addenda offline: strict JSON, schema, signature, trusted kid, chain per stream; with --decisions, re-derive every automatic trip. Prints a JSON report; exit 0 valid, 1 invalid, 2 usage.',
    options: [['--jwks FILE', 'the trusted public keys'], ['--decisions FILE', 'the decisions to re-derive trips from']],
    example: 'killswitch verify --jwks data/keys/jwks.json --decisions examples/decisions.ndjson data/addenda.ndjson',
  },
  authz: {
    usage: 'killswitch authz --config FILE',
    summary: 'The authorization endpoint for nginx auth_request and Envoy ext_authz: follows the block ledger, answers 200 or the refusal.',
    options: [['--config FILE', 'the configuration (authz section, and kafka or data_dir for the ledger)']],
    example: 'killswitch authz --config examples/service.yaml',
  },
  block: {
    usage: 'killswitch block AGENT_ID --reason TEXT --by WHO [--url URL] [--token-file FILE] [--json]',
    summary: 'Block an identity through the operator API (audited: a signed kill event and addendum).',
    options: [['--reason TEXT', 'why (recorded in the kill event)'], ['--by WHO', 'who asks (recorded as authorized_by)'], ...OPERATOR_OPTIONS],
    example: 'killswitch block spiffe://example.org/ns/prod/sa/scraper --reason "runaway tool calls" --by alice',
  },
  unblock: {
    usage: 'killswitch unblock AGENT_ID --reason TEXT --by WHO [--url URL] [--token-file FILE] [--json]',
    summary: 'Lift the current block of an identity through the operator API; its window starts empty.',
    options: [['--reason TEXT', 'why (recorded in the kill event)'], ['--by WHO', 'who asks (recorded as authorized_by)'], ...OPERATOR_OPTIONS],
    example: 'killswitch unblock spiffe://example.org/ns/prod/sa/scraper --reason "false positive, ticket 42" --by alice',
  },
  status: {
    usage: 'killswitch status AGENT_ID [--url URL] [--token-file FILE] [--json]',
    summary: 'An identity\'s state: blocked or not, its epoch, and its current window.',
    options: OPERATOR_OPTIONS,
    example: 'killswitch status spiffe://example.org/ns/prod/sa/scraper',
  },
  blocks: {
    usage: 'killswitch blocks [--url URL] [--token-file FILE] [--json]',
    summary: 'Every identity blocked now.',
    options: OPERATOR_OPTIONS,
    example: 'killswitch blocks --json',
  },
  'keys generate': {
    usage: 'killswitch keys generate --out DIR [--if-missing]',
    summary: 'A new Ed25519 signing key as DIR/signing-key.pem (mode 0600) and its public key added to DIR/jwks.json; an existing key is kept as DIR/<kid>.pem and stays trusted (rotation).',
    options: [['--out DIR', 'where the key and jwks.json go (created if missing)'], ['--if-missing', 'do nothing when DIR already has a signing key']],
    example: 'killswitch keys generate --out data/keys --if-missing',
  },
  'tokens generate': {
    usage: 'killswitch tokens generate --out DIR --name NAME --roles viewer,operator,ingest,opa [--if-missing]',
    summary: 'A bearer token for the operator API as DIR/NAME.token (mode 0600) and its SHA-256 and roles in DIR/tokens.json (http.tokens_file).',
    options: [['--out DIR', 'where the files go (created if missing)'], ['--name NAME', '1 to 64 letters, digits, ".", "_" or "-"'], ['--roles LIST', 'comma-separated: viewer, operator, ingest, opa'], ['--if-missing', 'do nothing when the token already exists']],
    example: 'killswitch tokens generate --out data/tokens --name alice --roles viewer,operator',
  },
};

export const USAGE = `usage:
${Object.values(COMMANDS).map((c) => `  ${c.usage}`).join('\n')}
  killswitch --help | --version
Help on one command: killswitch <command> --help`;

export function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const width = Math.max(...c.options.map(([flag]) => flag.length), '-h, --help'.length);
  const options = [...c.options, ['-h, --help', 'this help'] as const].map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`);
  return `usage: ${c.usage}\n\n${c.summary}\n\noptions:\n${options.join('\n')}\n\nexample:\n  ${c.example}\n`;
}

/** A usage error of `command` (a key of COMMANDS, or undefined for the top level), pointing to its help. */
export function usageError(message: string, command?: string): KillSwitchError {
  return new KillSwitchError('USAGE', `${message} (see: killswitch ${command === undefined ? '' : `${command} `}--help)`);
}
