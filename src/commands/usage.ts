import { KillSwitchError } from '../core/errors.js';

export const USAGE = `usage:
  killswitch run --config FILE [--check-config] [INPUT ...]
  killswitch replay --config FILE [--key KEYFILE] [--addenda OUT] [INPUT ...]
  killswitch verify --jwks FILE [--decisions FILE] ADDENDA
  killswitch authz --config FILE
  killswitch keys generate --out DIR [--if-missing]
  killswitch --help | --version`;

export function usageError(message: string): KillSwitchError {
  return new KillSwitchError('USAGE', message);
}
