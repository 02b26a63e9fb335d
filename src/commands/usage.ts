import { KillSwitchError } from '../core/errors.js';

export const USAGE = `usage:
  killswitch run --config FILE [--check-config] [INPUT ...]
  killswitch replay --config FILE [--key KEYFILE] [--addenda OUT] [INPUT ...]
  killswitch verify --jwks FILE [--decisions FILE] ADDENDA
  killswitch authz --config FILE
  killswitch block AGENT_ID --reason TEXT --by WHO [--url URL] [--token-file FILE] [--json]
  killswitch unblock AGENT_ID --reason TEXT --by WHO [--url URL] [--token-file FILE] [--json]
  killswitch status AGENT_ID [--url URL] [--token-file FILE] [--json]
  killswitch blocks [--url URL] [--token-file FILE] [--json]
    (the operator API at --url, default KILLSWITCH_URL or http://127.0.0.1:8080; the token from
     KILLSWITCH_TOKEN or --token-file)
  killswitch keys generate --out DIR [--if-missing]
  killswitch tokens generate --out DIR --name NAME --roles viewer,operator,ingest [--if-missing]
  killswitch --help | --version`;

export function usageError(message: string): KillSwitchError {
  return new KillSwitchError('USAGE', message);
}
