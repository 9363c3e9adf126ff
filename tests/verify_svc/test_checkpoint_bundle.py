"""The signed checkpoint bundle end to end (issue 17): publish_svc builds it from Postgres, verify_svc
serves the same bytes over gRPC and HTTP, and the offline verifier decides from it — a certificate whose
result was amended is REVOKED offline from a bundle fetched after the amendment, within a minute."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2 as rpb
from services.gen.covidtest.type.v1 import testing_pb2 as t
from services.gen.covidtest.type.v1 import verdict_pb2 as v
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from services.hcert import keys as hkeys
from services.hcert.codec import Signer
from services.registry import checkpoint_bundle as cb
from services.registry import signing_keys
from tests.conftest import bearer, make_principal, start_verify_svc
from tests.publish_svc.conftest import activate_new_key, running_platform
from tests.result_svc.helpers import rid
from tests.verify_svc.conftest import amend_to_positive, released_certificate
from tools.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
FRESHNESS_S = 60  # the issue's bound: an amendment is in a bundle within a minute


@pytest.fixture(scope="module")
async def platform(database_url):
    # The production build interval (BUNDLE_BUILD_SECONDS, 10 s): the freshness test measures what devices get.
    async with running_platform(database_url) as running:
        running.bundle_key = await activate_new_key(database_url, running.env, purpose=signing_keys.BUNDLE)
        running.partner = await make_principal(database_url, Role.PARTNER, personal_data_access=True)
        running.device = await make_principal(database_url, Role.CHECKPOINT, province="24")
        running.http_port = free_port()
        running.verify_server = await start_verify_svc(running.env, BUNDLE_HTTP_PORT=str(running.http_port))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.verify_server.port}") as channel:
            running.verify = verify_service_pb2_grpc.VerifyServiceStub(channel)
            running.device_auth = bearer(running.device["token"])
            yield running
        await running.verify_server.stop(0)


def pinned(platform) -> list[x509.Certificate]:
    return [x509.load_der_x509_certificate(platform.bundle_key.certificate_der)]


async def fetch(platform, since: int = 0) -> vpb.GetCheckpointBundleResponse:
    """The bundle answer, once a bundle exists (the builder issues version 1 shortly after start)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await platform.verify.GetCheckpointBundle(
                vpb.GetCheckpointBundleRequest(since_version=since), metadata=platform.device_auth, timeout=10
            )
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert time.monotonic() < deadline, f"no bundle issued: {err.details()}"
            await asyncio.sleep(0.1)


def offline(tmp_path: Path, platform, bundle: bytes, *qrs: str, deltas=(), at: datetime | None = None):
    """(exit status, JSON lines) of the offline verifier given this bundle, the pinned key and QR texts."""
    (tmp_path / "bundle.cose").write_bytes(bundle)
    key = tmp_path / "bundle-key.pem"
    key.write_bytes(pinned(platform)[0].public_bytes(Encoding.PEM))
    args = ["--bundle", str(tmp_path / "bundle.cose"), "--bundle-key", str(key)]
    for i, delta in enumerate(deltas):
        (tmp_path / f"delta{i}.cose").write_bytes(delta)
        args += ["--delta", str(tmp_path / f"delta{i}.cose")]
    if at is not None:
        args += ["--at", at.isoformat()]
    proc = subprocess.run(
        [sys.executable, "-m", "services.verify_svc.offline", *args, *qrs],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


async def test_an_amended_or_withdrawn_result_is_revoked_offline_from_a_bundle_fetched_after_it_within_a_minute(
    platform, tmp_path
):
    event = await released_certificate(platform, 1700)
    withdrawn = await released_certificate(platform, 1701)
    qr, uvci = event.certificate.qr, event.certificate.certificate_id
    before = await fetch(platform)
    assert before.full
    held = cb.read_bundle(before.bundle, pinned(platform))
    assert cb.revocation_hash(uvci) not in held.content[cb.REVOKED]
    status, [answer] = offline(tmp_path, platform, before.bundle, qr)
    assert (status, answer["verdict"], answer["status_source"]) == (0, "VALID", "BUNDLE"), answer

    await amend_to_positive(platform, event)
    await platform.results.WithdrawResult(
        rpb.WithdrawResultRequest(
            request_id=rid(),
            sample_barcode=withdrawn.result.sample_barcode,
            reason=t.WITHDRAWAL_REASON_LAB_ERROR,
        ),
        metadata=bearer(platform.lab["token"]),
    )
    amended_at = time.monotonic()
    both = {cb.revocation_hash(uvci), cb.revocation_hash(withdrawn.certificate.certificate_id)}
    # A device that keeps version N asks for what changed since; the deltas it gets, applied in order,
    # must leave it with exactly the full bundle of the same version.
    while True:
        answer_since = await fetch(platform, held.version)
        current = held
        for delta in answer_since.deltas:
            current = cb.apply(current, cb.read_delta(delta, pinned(platform)))
        if both <= current.content[cb.REVOKED].keys():
            break
        assert time.monotonic() - amended_at < FRESHNESS_S, "the amendment never reached the bundle"
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - amended_at
    assert elapsed < FRESHNESS_S, f"the amendment took {elapsed:.1f} s to reach the bundle"
    assert not answer_since.full and answer_since.deltas, "a device one change behind gets deltas"
    full = await fetch(platform)
    latest = cb.read_bundle(full.bundle, pinned(platform))
    if latest.version == current.version:
        assert latest.content == current.content and latest.content_sha256 == current.content_sha256

    status, answers = offline(tmp_path, platform, full.bundle, qr, withdrawn.certificate.qr)
    assert status == 0 and [a["verdict"] for a in answers] == ["REVOKED", "REVOKED"], answers
    status, [answer] = offline(tmp_path, platform, before.bundle, qr, deltas=answer_since.deltas)
    assert (status, answer["verdict"]) == (0, "REVOKED"), answer
    # The same QR online: the same verdict from the same logic.
    online = await platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=platform.device_auth)
    assert online.verdict == v.VERDICT_REVOKED


async def test_an_expired_bundle_is_refused_offline(platform, tmp_path):
    answer = await fetch(platform)
    bundle = cb.read_bundle(answer.bundle, pinned(platform))
    event = await released_certificate(platform, 1750)
    status, lines = offline(
        tmp_path, platform, answer.bundle, event.certificate.qr, at=bundle.valid_until + timedelta(seconds=1)
    )
    assert status == 2 and lines == [lines[0]] and lines[0]["reason"] == "BUNDLE_EXPIRED", lines
    status, [ok] = offline(tmp_path, platform, answer.bundle, event.certificate.qr, at=datetime.now(UTC))
    assert status == 0 and ok["verdict"] == "VALID", ok


async def test_a_tampered_bundle_or_one_signed_by_another_key_is_refused_offline(platform, tmp_path):
    answer = await fetch(platform)
    tampered = bytearray(answer.bundle)
    tampered[len(tampered) // 2] ^= 0x01
    status, [line] = offline(tmp_path, platform, bytes(tampered), "HC1:X")
    assert status == 2 and line["reason"] in ("BUNDLE_SIGNATURE_INVALID", "BUNDLE_MALFORMED"), line
    # The same payload signed by another key: a genuine signature, but not by the pinned bundle key.
    other = hkeys.SigningKeyMaterial.generate("ES256")
    forged = cb.sign(Signer(other), cb.payload_bytes(answer.bundle))
    status, [line] = offline(tmp_path, platform, forged, "HC1:X")
    assert status == 2 and line["reason"] == "BUNDLE_KEY_UNKNOWN", line


async def test_http_serves_the_same_bytes_cacheably(platform):
    answer = await fetch(platform)
    base = f"http://127.0.0.1:{platform.http_port}/bundle/v1"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/latest") as response:
            assert response.status == 200
            body = await response.read()
            etag = response.headers["ETag"]
            assert response.headers["Content-Type"].startswith("application/cose")
            assert "max-age" in response.headers["Cache-Control"]
        version = int(response.headers["X-Bundle-Version"])
        assert version >= answer.version and (version > answer.version or body == answer.bundle)
        async with http.get(f"{base}/latest", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        if version > 1:
            rpc = await platform.verify.GetCheckpointBundle(
                vpb.GetCheckpointBundleRequest(since_version=version - 1), metadata=platform.device_auth
            )
            async with http.get(f"{base}/delta/{version - 1}") as response:
                assert response.status == 200 and "immutable" in response.headers["Cache-Control"]
                delta = await response.read()
            if rpc.version == version:
                assert [delta] == list(rpc.deltas)
            assert cb.read_delta(delta, pinned(platform)).version == version
        async with http.get(f"{base}/delta/{version + 5}") as response:
            assert response.status == 404
        # Not a whole number in ASCII digits: 400 (or 404 for what is no path segment), never a 5xx.
        for bad in ("x", "-1", "+1", "1e3", "9" * 40, "%00", "%D9%A1%D9%A2", "1%20", "..%2F..%2Fetc"):
            async with http.get(f"{base}/delta/{bad}") as response:
                assert response.status in (400, 404), (bad, response.status)
        async with http.post(f"{base}/latest") as response:
            assert response.status == 405


async def test_a_device_up_to_date_gets_nothing_and_one_from_the_future_gets_the_full_bundle(platform):
    answer = await fetch(platform)
    same = await fetch(platform, answer.version)
    if same.version == answer.version:
        assert not same.full and not same.bundle and not same.deltas
    future = await fetch(platform, answer.version + 1000)
    assert future.full and future.bundle
    # The active rapid-test devices travel with it (none imported here: the shipped list's active ones).
    devices = cb.rat_devices_of(cb.read_bundle(future.bundle, pinned(platform)))
    assert devices is not None and "1232" in devices and all(devices.values())


async def test_a_certificate_signed_with_a_bundle_key_never_verifies(platform):
    """Bundle keys sign bundles only: one imported (so the test holds its private half) stays off the trust
    list and out of the bundle's trust list, and a DCC it signs is UNKNOWN_ISSUER."""
    from services.common.db import connect
    from services.registry.key_sealing import SigningKeySealer, parse_kek_public
    from tests.hcert.test_signature_algorithms import ecdsa_qr

    private = hkeys.generate_private_key("ES256")
    sealer = SigningKeySealer(parse_kek_public(platform.env["SIGNING_KEYS_KEK_PUBLIC"]))
    conn = await connect(platform.env["DATABASE_URL"])
    try:
        row = await signing_keys.import_key(
            conn, None, sealer, hkeys.private_key_pem(private), purpose=signing_keys.BUNDLE
        )
    finally:
        await conn.close()
    qr = ecdsa_qr(private, "ES256", row.certificate_der)
    answer = await platform.verify.Verify(vpb.VerifyRequest(qr=qr), metadata=platform.device_auth)
    assert answer.verdict == v.VERDICT_UNKNOWN_ISSUER, answer
    trust_list = await platform.verify.GetTrustList(vpb.GetTrustListRequest(), metadata=platform.device_auth)
    assert row.certificate_der not in {c.certificate_der for c in trust_list.added}
    bundle = cb.read_bundle((await fetch(platform)).bundle, pinned(platform))
    assert row.certificate_der not in {e["certificate"] for e in bundle.content[cb.TRUST_LIST].values()}
