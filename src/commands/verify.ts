/** `killswitch verify --jwks FILE [--decisions FILE] ADDENDA`: JSON report on stdout; exit 0 valid, 1 invalid (docs/spec.md#9-command-line). */
import { loadJwks } from '../adapters/signing/keys.js';
import { verifyAddenda } from '../verify/verify-addenda.js';

export async function verify(jwksFile: string, addendaFile: string, decisionsFile: string | undefined): Promise<number> {
  const trusted = loadJwks(jwksFile);
  const report = await verifyAddenda(addendaFile, trusted, decisionsFile);
  if (report.file_missing === true) {
    // The report is valid JSON either way; the person at the terminal should still see why it is empty.
    process.stderr.write(`killswitch: ${addendaFile} does not exist; verified as a file holding no addendum\n`);
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return report.valid ? 0 : 1;
}
