/** Certificates for mTLS tests, made with the openssl CLI: a CA, a server cert for 127.0.0.1, client certs with a SPIFFE URI SAN. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface Pem {
  readonly key: string;
  readonly cert: string;
}

export function makeCa(dir: string): Pem {
  openssl(['req', '-x509', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=killswitch-test-ca', '-days', '2'], dir);
  return { key: readFileSync(join(dir, 'ca.key'), 'utf8'), cert: readFileSync(join(dir, 'ca.crt'), 'utf8') };
}

/** A certificate signed by the CA in `dir` (makeCa first), with the given subjectAltName and extended key usage. */
export function makeCert(dir: string, name: string, subjectAltName: string, usage: 'serverAuth' | 'clientAuth'): Pem {
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${subjectAltName}\nextendedKeyUsage=${usage}\n`);
  openssl(['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`], dir);
  return { key: readFileSync(join(dir, `${name}.key`), 'utf8'), cert: readFileSync(join(dir, `${name}.crt`), 'utf8') };
}
