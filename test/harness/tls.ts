// Test certificate generation with the `openssl` CLI.
//
// makeTestCerts(dir) writes a throw-away CA and a server certificate signed by
// it into `dir`:
//   ca.crt / ca.key          self-signed CA (CN=Switchyard Test CA), valid 3 days
//   server.crt / server.key  CN=localhost, SAN DNS:localhost + IP:127.0.0.1,
//                            EKU serverAuth, valid 2 days
// Keys are unencrypted PKCS#8 EC P-256 keys (fast to generate), mode 0600.
// Used for PostgreSQL's ssl=on in the cluster harness and for the gateway's
// own TLS listener tests.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface TestCerts {
  caFile: string;
  /** CA private key (for tests that want to sign more certificates). */
  caKeyFile: string;
  certFile: string;
  keyFile: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface MakeTestCertsOptions {
  /** chown the directory and every generated file to this user (e.g. postgres when running as root). */
  owner?: { uid: number; gid: number };
  /** Extra subjectAltName entries for the server cert, e.g. ['DNS:gateway', 'IP:::1']. */
  extraSans?: string[];
}

let opensslPath: string | null | undefined;

/** Path of a working openssl binary, or null. */
export function findOpenssl(): string | null {
  if (opensslPath !== undefined) return opensslPath;
  opensslPath = null;
  for (const cand of ['/usr/bin/openssl', 'openssl']) {
    try {
      execFileSync(cand, ['version'], { stdio: ['ignore', 'pipe', 'pipe'] });
      opensslPath = cand;
      break;
    } catch {
      // try next
    }
  }
  return opensslPath;
}

const CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = @sans
[sans]
`;

export function makeTestCerts(dir: string, opts: MakeTestCertsOptions = {}): TestCerts {
  const openssl = findOpenssl();
  if (!openssl) throw new Error('makeTestCerts: the openssl CLI was not found (expected /usr/bin/openssl)');
  fs.mkdirSync(dir, { recursive: true });

  const f = (name: string): string => path.join(dir, name);
  const sans = ['DNS:localhost', 'IP:127.0.0.1', ...(opts.extraSans ?? [])];
  const sanLines = sans.map((s, i) => {
    const idx = s.indexOf(':');
    return `${s.slice(0, idx)}.${i + 1} = ${s.slice(idx + 1)}`;
  });
  const cnfFile = f('openssl.cnf');
  fs.writeFileSync(cnfFile, CNF + sanLines.join('\n') + '\n');

  const run = (args: string[]): void => {
    try {
      execFileSync(openssl, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, OPENSSL_CONF: cnfFile },
      });
    } catch (e) {
      const err = e as { stderr?: Buffer; message: string };
      throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`);
    }
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

  run(['req', '-x509', '-config', cnfFile, '-extensions', 'v3_ca', ...ec,
    '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '3', '-sha256', '-subj', '/CN=Switchyard Test CA']);
  run(['req', '-new', '-config', cnfFile, ...ec,
    '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'),
    '-set_serial', '0x' + randomBytes(8).toString('hex').replace(/^./, '1'), '-days', '2', '-sha256',
    '-extfile', cnfFile, '-extensions', 'v3_server', '-out', f('server.crt')]);
  fs.rmSync(f('server.csr'), { force: true });
  fs.rmSync(cnfFile, { force: true });

  const files = ['ca.crt', 'ca.key', 'server.crt', 'server.key'];
  for (const name of files) {
    fs.chmodSync(f(name), name.endsWith('.key') ? 0o600 : 0o644);
    if (opts.owner) fs.chownSync(f(name), opts.owner.uid, opts.owner.gid);
  }
  if (opts.owner) fs.chownSync(dir, opts.owner.uid, opts.owner.gid);

  return {
    caFile: f('ca.crt'),
    caKeyFile: f('ca.key'),
    certFile: f('server.crt'),
    keyFile: f('server.key'),
    caPem: fs.readFileSync(f('ca.crt'), 'utf8'),
    certPem: fs.readFileSync(f('server.crt'), 'utf8'),
    keyPem: fs.readFileSync(f('server.key'), 'utf8'),
  };
}
