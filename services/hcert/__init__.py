"""HCERT: the EU Digital COVID Certificate (DCC) QR format the platform issues and checks.

`"HC1:" + Base45(zlib(COSE_Sign1(CWT)))`, where the CWT carries `iss` (1) = "VN", `iat` (6), `exp` (4)
and `hcert` (-260) → {1: DCC JSON} (docs/design.md, "The QR code").

Modules:

- `keys` — document-signer keys and certificates: generation and import (ES256 / PS256), the `kid`
  (first 8 bytes of SHA-256 over the certificate's DER), DCC entry-type OIDs in the extended key usage.
- `uvci` — unique certificate identifiers `URN:UVCI:01:VN:…#c` with their Luhn mod 38 check character.
- `payload` — the DCC JSON for a test entry (schema 1.3), including ICAO 9303 name transliteration.
- `codec` — COSE_Sign1 signing, CWT encoding and the "HC1:" text.
- `qr` — QR rendering (alphanumeric mode, error correction Q) as PNG, SVG or terminal text.
- `decode` — the verifier's side: every layer checked, each failure named by its stage.
- `valuesets` and `dcc/` — the DCC JSON schema and value sets (Apache-2.0, see dcc/NOTICE).

Shared by publish_svc (signing) and verify_svc (decoding).
"""
