// SPDX-License-Identifier: Apache-2.0
//
// mdoc_check.js -- an independent ISO/IEC 18013-5 verifier (@auth0/mdl, pinned by
// package-lock.json, installed by tools/setup) judges an mdoc whose IssuerAuth hsmca signed.
//
//   node tests/mdl/mdoc_check.js --iaca IACA.pem --ds DS.pem --sign 'CMD'
//
// @auth0/mdl builds the mdoc (issuer-signed items with their digests, a device key, validity)
// and its Mobile Security Object; CMD gets the MSO (MobileSecurityObjectBytes, CBOR) as a file
// named by its first argument and prints hsmca's IssuerAuth (COSE_Sign1) on stdout. The mdoc then
// carries that IssuerAuth, the device signs a DeviceResponse, and @auth0/mdl's Verifier, trusting
// only the IACA, must accept it; with one byte of the MSO changed it must refuse it, naming the
// issuer signature. Prints TAP-style lines; exit 0 only when every check passed. A missing
// node_modules is a failure (tools/setup installs it), never a skip.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');

let mdl;
let jose;
let cbor;
let IssuerAuth;
try {
  mdl = require('@auth0/mdl');
  jose = require('jose');
  cbor = require('@auth0/mdl/lib/cbor');
  IssuerAuth = require('@auth0/mdl/lib/mdoc/model/IssuerAuth').default;
} catch (e) {
  console.log(`not ok - @auth0/mdl is not installed in tests/mdl/node_modules (run tools/setup): ${e.message}`);
  process.exit(1);
}

function arg(name) {
  const i = process.argv.indexOf(name);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`usage: node mdoc_check.js --iaca FILE --ds FILE --sign CMD (missing ${name})`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

let fails = 0;
let checks = 0;
function ok(cond, what) {
  checks += 1;
  if (cond) {
    console.log(`ok - ${what}`);
  } else {
    fails += 1;
    console.log(`not ok - ${what}`);
  }
}

const DOC_TYPE = 'org.iso.18013.5.1.mDL';
const NS = 'org.iso.18013.5.1';

async function main() {
  const iacaPem = fs.readFileSync(arg('--iaca'), 'utf8');
  const dsPem = fs.readFileSync(arg('--ds'), 'utf8');
  const signCmd = arg('--sign');
  const dsCert = new crypto.X509Certificate(dsPem);
  const country = /(?:^|\n)C=([A-Z]{2})/.exec(dsCert.subject);
  ok(country !== null, `the DS certificate names a country (${dsCert.subject.replace(/\n/g, ', ')})`);

  // the holder's device key, and a throwaway issuer key: @auth0/mdl builds the MSO only as part
  // of signing, so it signs once with a key nobody trusts; hsmca's signature replaces that one
  const device = await jose.generateKeyPair('ES256', { extractable: true });
  const devicePub = await jose.exportJWK(device.publicKey);
  const devicePriv = await jose.exportJWK(device.privateKey);
  const throwaway = await jose.generateKeyPair('ES256', { extractable: true });
  const now = new Date();
  const until = new Date(now.getTime() + 180 * 86400 * 1000);
  const unsigned = await new mdl.Document(DOC_TYPE)
    .addIssuerNameSpace(NS, {
      family_name: 'Mustermann',
      given_name: 'Erika',
      birth_date: '1971-09-01',
      issuing_country: country ? country[1] : 'XX',
      document_number: 'HSMCA-0001',
    })
    .useDigestAlgorithm('SHA-256')
    .addValidityInfo({ signed: now, validFrom: now, validUntil: until })
    .addDeviceKeyInfo({ deviceKey: devicePub })
    .sign({
      issuerPrivateKey: await jose.exportJWK(throwaway.privateKey),
      issuerCertificate: dsPem,
      alg: 'ES256',
    });
  const mso = Buffer.from(unsigned.issuerSigned.issuerAuth.payload);

  // hsmca signs the MSO
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hsmca-mdoc-'));
  const msoFile = path.join(dir, 'mso.cbor');
  fs.writeFileSync(msoFile, mso);
  let cose;
  try {
    cose = execFileSync('sh', ['-c', `${signCmd} "$1"`, 'sign', msoFile], {
      maxBuffer: 1 << 20,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const raw = cbor.cborDecode(cose);
  ok(Array.isArray(raw) && raw.length === 4, 'hsmca answered an untagged COSE_Sign1 (4 items)');
  const signed = new IssuerAuth(...raw);
  ok(signed.algName === 'ES256', `its algorithm is ES256 (${signed.algName})`);
  ok(Buffer.from(signed.payload).equals(mso), 'its payload is the MSO sent, byte for byte');
  const x5 = signed.x5chain || [];
  ok(x5.length === 1 && Buffer.from(x5[0]).equals(dsCert.raw),
    'its x5chain holds exactly the DS certificate');

  async function present(issuerAuth) {
    const doc = new mdl.IssuerSignedDocument(DOC_TYPE, {
      nameSpaces: unsigned.issuerSigned.nameSpaces,
      issuerAuth,
    });
    const transcript = cbor.cborEncode(cbor.DataItem.fromData([null, null, ['hsmca', crypto.randomBytes(16).toString('hex')]]));
    const response = await mdl.DeviceResponse.from(new mdl.MDoc([doc]))
      .usingPresentationDefinition({
        id: 'hsmca-mdl-test',
        input_descriptors: [{
          id: DOC_TYPE,
          format: { mso_mdoc: { alg: ['ES256'] } },
          constraints: {
            limit_disclosure: 'required',
            fields: ['family_name', 'given_name', 'birth_date', 'issuing_country', 'document_number']
              .map((f) => ({ path: [`$['${NS}']['${f}']`], intent_to_retain: false })),
          },
        }],
      })
      .usingSessionTranscriptBytes(transcript)
      .authenticateWithSignature(devicePriv, 'ES256')
      .sign();
    return { encoded: response.encode(), transcript };
  }

  const verifier = new mdl.Verifier([iacaPem]);
  // accepted
  {
    const { encoded, transcript } = await present(signed);
    let err = null;
    try {
      await verifier.verify(encoded, { encodedSessionTranscript: transcript });
    } catch (e) {
      err = e;
    }
    ok(err === null, `@auth0/mdl's Verifier accepts the mdoc with the IACA as its only root${err ? `: ${err.message}` : ''}`);
    const diag = await verifier.getDiagnosticInformation(encoded, { encodedSessionTranscript: transcript });
    ok(diag.issuerSignature.isValid, `issuer authentication passed (${JSON.stringify(diag.issuerSignature.reasons)})`);
    ok(diag.dataIntegrity.isValid, `data integrity passed: ${diag.dataIntegrity.disclosedAttributes} attributes`);
    ok(diag.deviceSignature && diag.deviceSignature.isValid, 'device authentication passed');
  }
  // one byte of the MSO changes: the first byte of the first value digest
  {
    const tampered = Buffer.from(mso);
    const at = tampered.indexOf(Buffer.from([0x58, 0x20]));
    ok(at > 0, 'the MSO holds a 32-byte digest to change');
    tampered[at + 2] ^= 0x01;
    const forged = new IssuerAuth(raw[0], raw[1], tampered, raw[3]);
    const { encoded, transcript } = await present(forged);
    let err = null;
    try {
      await verifier.verify(encoded, { encodedSessionTranscript: transcript });
    } catch (e) {
      err = e;
    }
    ok(err !== null && /Issuer signature must be valid/.test(err.message),
      `with one byte of the MSO changed the Verifier refuses it (${err ? err.message : 'accepted!'})`);
  }
  // another IACA as the only root: refused on the certificate chain
  {
    const { encoded, transcript } = await present(signed);
    const other = fs.readFileSync(arg('--other-root'), 'utf8');
    let err = null;
    try {
      await new mdl.Verifier([other]).verify(encoded, { encodedSessionTranscript: transcript });
    } catch (e) {
      err = e;
    }
    ok(err instanceof mdl.MDLError && /certificate/i.test(err.message),
      `under another root the Verifier refuses it (${err ? err.message : 'accepted!'})`);
  }
  console.log(`# ${checks - fails}/${checks} checks passed`);
  process.exit(fails === 0 ? 0 : 1);
}

main().catch((e) => {
  console.log(`not ok - ${e.stack || e}`);
  process.exit(1);
});
