"""Signing keys through AdminService and the CLI: generate, import, rotate, retire; never a private key out."""

import json
import uuid

import grpc
import pytest
from cryptography import x509
from google.protobuf.duration_pb2 import Duration

from services.gen.covidtest.admin.v1 import admin_service_pb2 as pb
from services.gen.covidtest.type.v1 import certificate_pb2
from services.hcert import keys as hkeys
from tests.admin.cli_runner import run_admin
from tests.conftest import fresh_secrets
from tests.grpc_errors import error_reason


def rid() -> str:
    return str(uuid.uuid4())


async def test_generate_activate_rotate_and_retire(admin, db):
    stub, auth, _ = admin
    validity = Duration(seconds=30 * 86400)
    first = (
        await stub.GenerateSigningKey(
            pb.GenerateSigningKeyRequest(
                request_id=rid(), algorithm=certificate_pb2.SIGNING_ALGORITHM_ES256, validity=validity
            ),
            metadata=auth,
        )
    ).signing_key
    assert first.state == pb.SIGNING_KEY_STATE_PENDING
    cert = x509.load_der_x509_certificate(first.certificate.certificate_der)
    assert first.certificate.kid == hkeys.kid_of(first.certificate.certificate_der)
    assert list(first.certificate.allowed_entry_types) == [certificate_pb2.ENTRY_TYPE_TEST]  # DCC EKU: test only
    assert hkeys.OID_TEST in {
        u.dotted_string for u in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    }
    # The private key is sealed in Postgres, never stored or returned in the clear.
    sealed = await db.fetchval("SELECT private_key_enc FROM signing_keys WHERE id = $1::uuid", first.signing_key_id)
    assert sealed and b"PRIVATE KEY" not in bytes(sealed)
    assert b"PRIVATE KEY" not in first.SerializeToString()

    activated = await stub.ActivateSigningKey(
        pb.ActivateSigningKeyRequest(request_id=rid(), signing_key_id=first.signing_key_id), metadata=auth
    )
    assert activated.activated.state == pb.SIGNING_KEY_STATE_ACTIVE
    second = (
        await stub.GenerateSigningKey(
            pb.GenerateSigningKeyRequest(request_id=rid(), algorithm=certificate_pb2.SIGNING_ALGORITHM_PS256),
            metadata=auth,
        )
    ).signing_key
    rotated = await stub.ActivateSigningKey(
        pb.ActivateSigningKeyRequest(request_id=rid(), signing_key_id=second.signing_key_id), metadata=auth
    )
    assert rotated.deactivated.signing_key_id == first.signing_key_id
    assert rotated.deactivated.state == pb.SIGNING_KEY_STATE_DEACTIVATED
    assert await db.fetchval("SELECT count(*) FROM signing_keys WHERE state = 'ACTIVE'") == 1

    with pytest.raises(grpc.aio.AioRpcError) as err:  # the active key cannot be retired
        await stub.RetireSigningKey(
            pb.RetireSigningKeyRequest(request_id=rid(), signing_key_id=second.signing_key_id), metadata=auth
        )
    assert error_reason(err.value) == "SIGNING_KEY_STATE_INVALID"
    retired = await stub.RetireSigningKey(
        pb.RetireSigningKeyRequest(request_id=rid(), signing_key_id=first.signing_key_id), metadata=auth
    )
    assert retired.signing_key.state == pb.SIGNING_KEY_STATE_RETIRED
    assert (
        await db.fetchval("SELECT private_key_enc FROM signing_keys WHERE id = $1::uuid", first.signing_key_id) is None
    )
    changes = await db.fetch(
        "SELECT change FROM trust_list_changes WHERE kid = $1 ORDER BY version", first.certificate.kid
    )
    assert [r["change"] for r in changes] == ["ADDED", "REMOVED"]
    listed = await stub.ListSigningKeys(pb.ListSigningKeysRequest(state=pb.SIGNING_KEY_STATE_ACTIVE), metadata=auth)
    assert [k.signing_key_id for k in listed.signing_keys] == [second.signing_key_id]


async def test_retiring_a_key_with_unexpired_certificates_needs_force(admin, db):
    stub, auth, _ = admin
    key = (
        await stub.GenerateSigningKey(
            pb.GenerateSigningKeyRequest(request_id=rid(), algorithm=certificate_pb2.SIGNING_ALGORITHM_ES256),
            metadata=auth,
        )
    ).signing_key
    # It signed a certificate that is still valid (minimal rows: a lab, a person, a sample, a result).
    await db.execute(
        """
        WITH lab AS (INSERT INTO organisations (id, name, kind, province_code)
                     VALUES (gen_random_uuid(), 'Lab ' || gen_random_uuid(), 'LAB', '24') RETURNING id),
             person AS (INSERT INTO persons (id, person_key_hash, phone_hash, dob_hash, full_name_enc,
                                             date_of_birth_enc, province_code)
                        VALUES (gen_random_uuid(), decode(md5(random()::text), 'hex'),
                                '\\x01', '\\x02', '\\x03', '\\x04', '24')
                        RETURNING id),
             sample AS (INSERT INTO samples (id, org_id, barcode, person_id, lab_org_id, test_type, collected_at,
                                             sampling_site, registration_hash, state)
                        SELECT gen_random_uuid(), lab.id, 'K1', person.id, lab.id, 'NAAT', now(), 'site', '\\x05',
                               'RESULTED' FROM lab, person RETURNING id, person_id, lab_org_id),
             result AS (INSERT INTO results (id, sample_id, version, outcome, state, lab_org_id, tested_at)
                        SELECT gen_random_uuid(), id, 1, 'NEGATIVE', 'RELEASED', lab_org_id, now() FROM sample
                        RETURNING id, sample_id)
        INSERT INTO certificates (id, uvci, result_id, person_id, signing_key_id, qr_enc, issued_at, expires_at)
        SELECT gen_random_uuid(), 'URN:UVCI:01:VN:KEYINUSE#A', result.id, sample.person_id, $1::uuid, '\\x00', now(),
               now() + interval '1 day' FROM result JOIN sample ON sample.id = result.sample_id""",
        key.signing_key_id,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RetireSigningKey(
            pb.RetireSigningKeyRequest(request_id=rid(), signing_key_id=key.signing_key_id), metadata=auth
        )
    assert error_reason(err.value) == "SIGNING_KEY_IN_USE"
    forced = await stub.RetireSigningKey(
        pb.RetireSigningKeyRequest(request_id=rid(), signing_key_id=key.signing_key_id, force=True), metadata=auth
    )
    assert forced.signing_key.state == pb.SIGNING_KEY_STATE_RETIRED


async def test_import_refuses_bad_keys_and_mismatched_certificates(admin):
    stub, auth, _ = admin
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ImportSigningKey(
            pb.ImportSigningKeyRequest(request_id=rid(), private_key_pem="not a key"), metadata=auth
        )
    assert error_reason(err.value) == "PRIVATE_KEY_INVALID"
    key = hkeys.generate_private_key("ES256")
    other = hkeys.generate_private_key("ES256")
    from datetime import timedelta

    from cryptography.hazmat.primitives.serialization import Encoding

    foreign_cert = hkeys.make_certificate(other, "ES256", timedelta(days=10)).public_bytes(Encoding.PEM).decode()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ImportSigningKey(
            pb.ImportSigningKeyRequest(
                request_id=rid(), private_key_pem=hkeys.private_key_pem(key).decode(), certificate_pem=foreign_cert
            ),
            metadata=auth,
        )
    assert error_reason(err.value) == "KEY_CERTIFICATE_MISMATCH"
    imported = await stub.ImportSigningKey(
        pb.ImportSigningKeyRequest(request_id=rid(), private_key_pem=hkeys.private_key_pem(key).decode()), metadata=auth
    )
    assert imported.signing_key.state == pb.SIGNING_KEY_STATE_PENDING


def test_cli_imports_a_key_from_a_file_and_lists_it(database_url, tmp_path):
    pem = tmp_path / "dsc.pem"
    pem.write_bytes(hkeys.private_key_pem(hkeys.generate_private_key("ES256")))  # generated at test time
    keys: dict[str, str | None] = dict(fresh_secrets())

    def cli(*args):
        return run_admin(database_url, keys, *args, timeout=60)

    proc = cli("signing-key", "import", "--private-key", str(pem))
    assert proc.returncode == 0, proc.stderr
    imported = json.loads(proc.stdout)
    assert imported["state"] == "PENDING" and "PRIVATE KEY" not in proc.stdout
    proc = cli("signing-key", "activate", imported["id"])
    assert proc.returncode == 0 and json.loads(proc.stdout)["activated"]["state"] == "ACTIVE"
    proc = cli("signing-key", "import", "--private-key", str(tmp_path / "missing.pem"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr
    proc = run_admin(database_url, {**keys, "SIGNING_KEYS_KEK_PUBLIC": None}, "signing-key", "generate")
    assert proc.returncode == 1 and "SIGNING_KEYS_KEK_PUBLIC" in proc.stderr


async def test_a_bundle_key_has_its_own_active_key_and_never_enters_the_trust_list(admin, db):
    stub, auth, _ = admin
    generated = []
    for purpose in (pb.SIGNING_KEY_PURPOSE_DCC, pb.SIGNING_KEY_PURPOSE_BUNDLE):
        key = (
            await stub.GenerateSigningKey(
                pb.GenerateSigningKeyRequest(
                    request_id=rid(), algorithm=certificate_pb2.SIGNING_ALGORITHM_ES256, purpose=purpose
                ),
                metadata=auth,
            )
        ).signing_key
        assert key.purpose == purpose
        activated = await stub.ActivateSigningKey(
            pb.ActivateSigningKeyRequest(request_id=rid(), signing_key_id=key.signing_key_id), metadata=auth
        )
        # Each purpose has its own ACTIVE key: activating the bundle key leaves the DCC key signing.
        assert not activated.deactivated.signing_key_id or activated.deactivated.purpose == purpose
        generated.append(key)
    dcc, bundle = generated
    states = dict(await db.fetch("SELECT id::text, state FROM signing_keys WHERE id = ANY($1::uuid[])", [
        dcc.signing_key_id, bundle.signing_key_id
    ]))  # fmt: skip
    assert states == {dcc.signing_key_id: "ACTIVE", bundle.signing_key_id: "ACTIVE"}
    on_trust_list = await db.fetchval(
        "SELECT count(*) FROM trust_list_changes WHERE certificate_der = $1", bundle.certificate.certificate_der
    )
    assert on_trust_list == 0
    assert list(bundle.certificate.allowed_entry_types) == []  # no DCC extended key usage: it signs no entry type
    listed = await stub.ListSigningKeys(
        pb.ListSigningKeysRequest(purpose=pb.SIGNING_KEY_PURPOSE_BUNDLE, page_size=1000), metadata=auth
    )
    assert listed.signing_keys and {k.purpose for k in listed.signing_keys} == {pb.SIGNING_KEY_PURPOSE_BUNDLE}
    assert bundle.signing_key_id in {k.signing_key_id for k in listed.signing_keys}


def test_cli_generates_a_bundle_key(database_url):
    proc = run_admin(database_url, dict(fresh_secrets()), "signing-key", "generate", "--purpose", "bundle")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["purpose"] == "BUNDLE"
    proc = run_admin(database_url, dict(fresh_secrets()), "signing-key", "list", "--purpose", "BUNDLE")
    assert proc.returncode == 0 and {k["purpose"] for k in json.loads(proc.stdout)} == {"BUNDLE"}
