"""Document-signer keys and certificates for HCERTs.

A signing key of this platform is EC P-256 (COSE ES256) or RSA of at least 2048 bits (COSE PS256;
generated keys are 3072 bits). A foreign signing certificate may also hold EC P-384 (ES384) or P-521
(ES512), which issuers use and the HCERT specification allows (`verification_algorithm`). Its X.509
certificate is what verifiers trust; the COSE `kid` is the first 8 bytes of SHA-256 over its DER.
The DCC entry types a certificate may sign are listed as OIDs in its extended key usage; a
certificate without any of them may sign every type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

ALGORITHMS = ("ES256", "PS256")  # what this platform signs with
# What a trusted certificate's EC key verifies (verification_algorithm): the curve fixes the algorithm.
_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
KID_LENGTH = 8
MIN_RSA_BITS = 2048
GENERATED_RSA_BITS = 3072

# Extended key usage OIDs restricting a document signer to DCC entry types (eHealth Network,
# "Technical Specifications for Digital Green Certificates", Volume 1, §5.4.1).
OID_TEST = "1.3.6.1.4.1.1847.2021.1.1"
OID_VACCINATION = "1.3.6.1.4.1.1847.2021.1.2"
OID_RECOVERY = "1.3.6.1.4.1.1847.2021.1.3"
# The same specification also lists these spellings (an extra ".0" arc), which real issuers and the
# public DCC test data use; a verifier must honour them too. We only ever write the ones above.
OID_TEST_ALT = "1.3.6.1.4.1.0.1847.2021.1.1"
OID_VACCINATION_ALT = "1.3.6.1.4.1.0.1847.2021.1.2"
OID_RECOVERY_ALT = "1.3.6.1.4.1.0.1847.2021.1.3"

ENTRY_TYPES = ("TEST", "VACCINATION", "RECOVERY")
ENTRY_TYPE_OIDS: dict[str, str] = {"TEST": OID_TEST, "VACCINATION": OID_VACCINATION, "RECOVERY": OID_RECOVERY}
_OID_ENTRY_TYPE: dict[str, str] = {
    OID_TEST: "TEST",
    OID_VACCINATION: "VACCINATION",
    OID_RECOVERY: "RECOVERY",
    OID_TEST_ALT: "TEST",
    OID_VACCINATION_ALT: "VACCINATION",
    OID_RECOVERY_ALT: "RECOVERY",
}

# Default backdating of a new certificate's notBefore, so that a verifier with a slightly slow clock
# (or a DCC `iat` rounded down) still finds the signing time inside the validity period.
CLOCK_SKEW = timedelta(minutes=5)


def kid_of(certificate_der: bytes) -> bytes:
    """The COSE key identifier of a signing certificate: the first 8 bytes of SHA-256 over its DER."""
    return hashlib.sha256(certificate_der).digest()[:KID_LENGTH]


def generate_private_key(algorithm: str) -> PrivateKey:
    """A new signing key: "ES256" → EC P-256, "PS256" → RSA 3072 (public exponent 65537)."""
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "PS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_RSA_BITS)
    raise ValueError(f"unknown signing algorithm {algorithm!r}: ES256 or PS256")


def key_algorithm(public_key: Any) -> str:
    """ "ES256" for an EC P-256 key, "PS256" for an RSA key of at least 2048 bits; ValueError otherwise.

    Accepts a private key too (its public half is used).
    """
    if isinstance(public_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        public_key = public_key.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise ValueError(f"EC key on curve {public_key.curve.name}: only P-256 (secp256r1) is allowed (ES256)")
        return "ES256"
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {public_key.key_size} bits: at least {MIN_RSA_BITS} are required (PS256)")
        return "PS256"
    raise ValueError(f"unsupported key type {type(public_key).__name__}: EC P-256 (ES256) or RSA (PS256) only")


def verification_algorithm(public_key: Any) -> str:
    """The COSE algorithm a trusted certificate's key verifies: ES256, ES384 or ES512 for EC P-256, P-384
    or P-521, PS256 for RSA of at least 2048 bits; ValueError naming the key type otherwise (Ed25519,
    Ed448, DSA, other curves, short RSA)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        algorithm = _CURVE_ALGORITHMS.get(public_key.curve.name)
        if algorithm is None:
            raise ValueError(f"EC key on curve {public_key.curve.name}: P-256, P-384 or P-521 only")
        return algorithm
    if isinstance(public_key, rsa.RSAPublicKey):
        return key_algorithm(public_key)
    raise ValueError(
        f"unsupported key type {type(public_key).__name__.removeprefix('_')}: "
        "EC P-256/P-384/P-521 (ES256/ES384/ES512) or RSA (PS256) only"
    )


def load_private_key_pem(pem: bytes | str) -> tuple[PrivateKey, str]:
    """Load an unencrypted PEM private key (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY").

    Returns the key and its algorithm. Raises ValueError with a readable reason for an encrypted key,
    anything that is not a PEM private key, a curve other than P-256, RSA under 2048 bits, or another
    key type.
    """
    if isinstance(pem, str):
        pem = pem.encode("utf-8")
    if not isinstance(pem, (bytes, bytearray, memoryview)):
        raise ValueError("the private key must be PEM text")
    try:
        key = serialization.load_pem_private_key(bytes(pem), password=None)
    except TypeError:
        # cryptography raises TypeError when a password is needed.
        raise ValueError("the private key is encrypted: provide it unencrypted (PKCS#8, SEC1 or PKCS#1 PEM)") from None
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported private key: {exc}") from None
    except ValueError:
        raise ValueError("not a readable PEM private key (expected unencrypted PKCS#8, SEC1 or PKCS#1)") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"unsupported key type {type(key).__name__}: EC P-256 (ES256) or RSA (PS256) only")
    return key, key_algorithm(key.public_key())


def private_key_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM. The caller seals it before storing it anywhere."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _entry_type_oids(entry_types) -> list[x509.ObjectIdentifier]:
    if isinstance(entry_types, str):
        entry_types = (entry_types,)
    oids = []
    for entry_type in entry_types:
        if entry_type not in ENTRY_TYPE_OIDS:
            raise ValueError(f"unknown DCC entry type {entry_type!r}: one of {', '.join(ENTRY_TYPES)}")
        oid = x509.ObjectIdentifier(ENTRY_TYPE_OIDS[entry_type])
        if oid not in oids:
            oids.append(oid)
    return oids


def make_certificate(
    key: PrivateKey,
    algorithm: str,
    validity: timedelta,
    *,
    country: str = "VN",
    common_name: str = "Bluezone test-result DSC",
    entry_types=("TEST",),
    not_before: datetime | None = None,
) -> x509.Certificate:
    """A self-signed document-signer certificate for `key`.

    Subject and issuer C=`country`, CN=`common_name`; key usage digitalSignature (critical); extended
    key usage with the DCC OIDs of `entry_types` (non-critical, like real DSCs; an empty
    `entry_types` leaves the extension out, which means "all types"). Valid from `not_before`
    (default: now minus CLOCK_SKEW) until now (or `not_before`) plus `validity`.
    """
    if key_algorithm(key) != algorithm:
        raise ValueError(f"the key is not a {algorithm} key")
    if validity <= timedelta(0):
        raise ValueError("validity must be positive")
    if not (isinstance(country, str) and len(country) == 2 and country.isascii() and country.isupper()):
        raise ValueError("country must be an ISO 3166-1 alpha-2 code in upper case")
    if not_before is None:
        start = datetime.now(UTC).replace(microsecond=0)
        not_before, not_after = start - CLOCK_SKEW, start + validity
    else:
        if not_before.tzinfo is None:
            raise ValueError("not_before must be timezone-aware")
        not_after = not_before + validity
    name = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, country), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
    )
    oids = _entry_type_oids(entry_types)
    if oids:
        builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
    # The self-signature uses SHA-256 with ECDSA, or RSA PKCS#1 v1.5 for RSA keys: v1.5
    # (sha256WithRSAEncryption) is what every X.509 parser on verifier devices understands, while
    # RSASSA-PSS certificate signatures still trip some older mobile stacks. The HCERT signatures
    # themselves are PSS (codec.Signer); nothing verifies this self-signature cryptographically
    # except as a sanity check, trust comes from the trust list.
    return builder.sign(key, hashes.SHA256())


def _oid_der(dotted: str) -> bytes:
    """DER encoding (tag, length, value) of an OBJECT IDENTIFIER."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return bytes([0x06, len(body)]) + bytes(body)


_OID_DER_ENTRY_TYPE = {_oid_der(oid): entry_type for oid, entry_type in _OID_ENTRY_TYPE.items()}


def allowed_entry_types(cert: x509.Certificate) -> tuple[str, ...]:
    """The DCC entry types the certificate may sign, from its extended key usage, in ENTRY_TYPES order.

    Empty tuple when no DCC OID is present (no extended key usage, or only other purposes), which
    means every type is allowed. Both OID spellings (with and without the ".0" arc) count.
    """
    found: set[str] = set()
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        found = {_OID_ENTRY_TYPE[oid.dotted_string] for oid in eku if oid.dotted_string in _OID_ENTRY_TYPE}
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        # Some real certificates carry extensions cryptography refuses to parse (e.g. an empty
        # extended key usage, as in the public DCC test case CO15). Fall back to looking for the
        # DER-encoded DCC OIDs in the to-be-signed part.
        tbs = cert.tbs_certificate_bytes
        found = {entry_type for der, entry_type in _OID_DER_ENTRY_TYPE.items() if der in tbs}
    return tuple(t for t in ENTRY_TYPES if t in found)


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_certificate(raw: bytes, *, pem_only: bool = False) -> x509.Certificate:
    """A PEM (or, unless `pem_only`, DER) X.509 certificate; ValueError when it is none.

    cryptography refuses an unknown version with x509.InvalidVersion (not a ValueError) and reads the
    names and validity only when they are first used, so a certificate broken inside would fail later,
    wherever it is used; a name attribute of BIT STRING type other than x500UniqueIdentifier is a
    TypeError there. All of these happen here, once, as ValueError, and so does an extension present twice
    (x509.DuplicateExtension, which RFC 5280 forbids). Extensions cryptography cannot parse are let through:
    real DCC signer certificates carry some (see `allowed_entry_types`), and their readers fall back."""
    try:
        if pem_only or raw.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(raw)
        else:
            cert = x509.load_der_x509_certificate(raw)
        cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018 - parses them
    except (x509.InvalidVersion, TypeError) as exc:
        raise ValueError(str(exc)) from None
    try:
        cert.extensions  # noqa: B018 - parses them
    except (x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise ValueError(str(exc)) from None
    except ValueError:
        pass
    return cert


def signing_key_algorithm(cert: x509.Certificate) -> str:
    """The algorithm of a trusted (document signer) certificate's key (`verification_algorithm`);
    ValueError otherwise (a key of another type or size, or one cryptography cannot read)."""
    try:
        public_key = cert.public_key()
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported public key: {exc}") from None
    return verification_algorithm(public_key)


def certificate_matches_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether the certificate's public key is the public half of `key`."""
    try:
        return _spki(cert.public_key()) == _spki(key.public_key())
    except (ValueError, UnsupportedAlgorithm, AttributeError):
        return False


@dataclass(frozen=True)
class SigningKeyMaterial:
    """A private signing key with its certificate; `kid` and `certificate_der` are derived.

    Construction checks that the key has `algorithm` and that the certificate is the key's.
    """

    key: PrivateKey = field(repr=False)
    certificate: x509.Certificate
    algorithm: str
    certificate_der: bytes = field(init=False, repr=False, compare=False)
    kid: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown signing algorithm {self.algorithm!r}: ES256 or PS256")
        actual = key_algorithm(self.key)
        if actual != self.algorithm:
            raise ValueError(f"the key is a {actual} key, not {self.algorithm}")
        if not certificate_matches_key(self.certificate, self.key):
            raise ValueError("the certificate does not belong to the private key")
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        object.__setattr__(self, "certificate_der", der)
        object.__setattr__(self, "kid", kid_of(der))

    @classmethod
    def generate(
        cls, algorithm: str = "ES256", validity: timedelta = timedelta(days=365), **certificate_options
    ) -> SigningKeyMaterial:
        """A fresh key with a self-signed certificate (tests, demos and the admin tool)."""
        key = generate_private_key(algorithm)
        return cls(
            key=key, certificate=make_certificate(key, algorithm, validity, **certificate_options), algorithm=algorithm
        )


__all__ = [
    "ALGORITHMS",
    "ENTRY_TYPES",
    "ENTRY_TYPE_OIDS",
    "KID_LENGTH",
    "OID_RECOVERY",
    "OID_RECOVERY_ALT",
    "OID_TEST",
    "OID_TEST_ALT",
    "OID_VACCINATION",
    "OID_VACCINATION_ALT",
    "SigningKeyMaterial",
    "allowed_entry_types",
    "certificate_matches_key",
    "generate_private_key",
    "key_algorithm",
    "kid_of",
    "load_private_key_pem",
    "make_certificate",
    "private_key_pem",
    "signing_key_algorithm",
    "verification_algorithm",
]
