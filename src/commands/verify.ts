/** `killswitch verify --jwks FILE [--decisions FILE] ADDENDA`: JSON report on stdout; exit 0 valid, 1 invalid. */
import { loadJwks } from '../adapters/signing/keys.js';
import { verifyAddenda } from '../verify/verify-addenda.js';

export async function verify(jwksFile: string, addendaFile: string, decisionsFile: string | undefined): Promise<number> {
  const trusted = loadJwks(jwksFile);
  const report = await verifyAddenda(addendaFile, trusted, decisionsFile);
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return report.valid ? 0 : 1;
}
