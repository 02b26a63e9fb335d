/**
 * The JSON Schemas in `schemas/` (the machine-readable contracts), compiled once with one strict Ajv
 * instance. `spiffe-id` is a custom format backed by the core's parser, so there is one definition of a
 * valid SPIFFE ID.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parseRfc3339 } from './core/time.js';
import { isSpiffeId } from './core/spiffe-id.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

/** `schemas/` of this package, found from this module whether it runs from src/ (tests) or dist/src/. */
export const SCHEMA_DIR = findSchemaDir(dirname(fileURLToPath(import.meta.url)));

function findSchemaDir(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'schemas'))) return join(dir, 'schemas');
    if (dirname(dir) === dir) throw new Error(`schemas/ not found above ${from}`);
  }
}

export const SCHEMA_FILES = {
  decision: 'policy-decision.schema.json',
  killEvent: 'kill-event.schema.json',
  shadowEvent: 'shadow-event.schema.json',
  addendum: 'trace-addendum.schema.json',
  config: 'config.schema.json',
} as const;
export type SchemaName = keyof typeof SCHEMA_FILES;

let ajv: Ajv2020 | undefined;
const compiled = new Map<SchemaName, ValidateFunction>();

function instance(): Ajv2020 {
  if (ajv === undefined) {
    ajv = new Ajv2020({ allErrors: true, strict: true, useDefaults: true });
    addFormats(ajv);
    ajv.addFormat('spiffe-id', { type: 'string', validate: isSpiffeId });
    // RFC 3339 exactly as the evaluator reads it (ajv-formats also accepts a space for 'T').
    ajv.addFormat('rfc3339', { type: 'string', validate: (s: string) => !Number.isNaN(parseRfc3339(s)) });
  }
  return ajv;
}

export function loadSchema(name: SchemaName): Record<string, unknown> {
  return JSON.parse(readFileSync(join(SCHEMA_DIR, SCHEMA_FILES[name]), 'utf8')) as Record<string, unknown>;
}

/** The compiled validator for a schema (compiled on first use, then cached). */
export function validator(name: SchemaName): ValidateFunction {
  let v = compiled.get(name);
  if (v === undefined) {
    v = instance().compile(loadSchema(name));
    compiled.set(name, v);
  }
  return v;
}

/**
 * A schema someone else registered (Schema Registry): compiled leniently (unknown keywords and formats
 * are annotations to us), in its own Ajv instance so it cannot clash with ours by $id. `references` are
 * the schemas it names in its registry references, by reference name (what its `$ref`s say). Throws
 * when Ajv cannot compile it (a draft-04 boolean `exclusiveMaximum`, a `$ref` to nothing we were given):
 * the caller refuses such a schema's records as `schema_unsupported` (docs/spec.md#8-bad-records-and-the-dlq).
 */
export function compileForeignSchema(schema: object, references: ReadonlyMap<string, object> = new Map()): ValidateFunction {
  // logger off: an unknown format is ignored as the lenient mode says, not warned about on stderr per schema
  const foreign = new Ajv2020({ allErrors: true, strict: false, validateFormats: true, logger: false });
  addFormats(foreign);
  // Registries mostly hold draft-07 schemas; their keywords validate the same way under 2020-12 here.
  const withoutDialect = (s: object): Record<string, unknown> => {
    const { $schema: _dialect, ...body } = s as Record<string, unknown>;
    return body;
  };
  for (const [name, referenced] of references) foreign.addSchema(withoutDialect(referenced), name);
  return foreign.compile(withoutDialect(schema));
}

/** Ajv errors as `path: message` lines, the form config errors and DLQ reasons use. */
/** What a schema's patterns mean, in words: a regular expression is no message for an operator. */
const PATTERN_MEANING: Readonly<Record<string, string>> = {
  '^(?:[^\\s:\\[\\]]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}$': 'must be host:port (or [IPv6-address]:port), e.g. 127.0.0.1:9092',
  '^[a-zA-Z0-9._-]{1,249}$': 'must be a Kafka topic name: 1 to 249 letters, digits, ".", "_" or "-"',
  '^[0-9a-f]{64}$': 'must be 64 lowercase hex digits (a SHA-256)',
  '^[a-z0-9-]+$': 'must be lowercase letters, digits and "-"',
  '^sha256:[0-9a-f]{64}$': 'must be "sha256:" and 64 lowercase hex digits',
  '^[A-Za-z0-9_-]{43}$': 'must be 43 base64url characters (32 bytes)',
  '^[A-Za-z0-9_-]{86}$': 'must be 86 base64url characters (a 64-byte Ed25519 signature)',
};

export function formatErrors(errors: readonly ErrorObject[] | null | undefined): string[] {
  if (errors === null || errors === undefined) return [];
  const lines = new Set<string>();
  for (const e of errors) {
    const path = e.instancePath === '' ? '/' : e.instancePath;
    const p = e.params as Record<string, unknown>;
    switch (e.keyword) {
      case 'additionalProperties':
        lines.add(`${childPath(path, String(p.additionalProperty))}: unknown key`);
        break;
      case 'required':
        lines.add(`${childPath(path, String(p.missingProperty))}: is required`);
        break;
      case 'enum':
        lines.add(`${path}: must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`);
        break;
      case 'pattern':
        lines.add(`${path}: ${PATTERN_MEANING[String(p.pattern)] ?? 'has the wrong form'}`);
        break;
      case 'if':
      case 'anyOf':
      case 'oneOf':
        // the branch errors around it say what is wrong
        break;
      default:
        lines.add(`${path}: ${e.message ?? 'is invalid'}`);
    }
  }
  return [...lines];
}

function childPath(path: string, key: string): string {
  return path === '/' ? `/${key}` : `${path}/${key}`;
}
