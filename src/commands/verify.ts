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
  const skipped = report.rederived?.skipped;
  if (skipped !== undefined && skipped.count > 0) {
    // a dump of a framed topic, or a file of something else, re-derives nothing: say so where it is seen
    const first = skipped.first[0]!;
    process.stderr.write(`killswitch: ${skipped.count} line(s) of ${decisionsFile} are not decisions and were skipped` +
      `${skipped.framed > 0 ? `, ${skipped.framed} of them Schema Registry framed values: unframe the dump first (docs/regulators.md)` : ''}` +
      ` (first: line ${first.line}, ${first.reason}: ${first.message})\n`);
  }
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return report.valid ? 0 : 1;
}
