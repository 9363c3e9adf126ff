"""Certificate signing for the relay, optionally in worker processes.

Building and signing an HCERT (DCC payload, CWT, COSE ES256/PS256, zlib, Base45) is the relay's main
CPU cost. With RELAY_SIGNING_PROCESSES > 0 it runs in that many worker processes (started with
`spawn`, never `fork`, since the server has imported grpc), so signing uses another core while the
relay process builds feed events; with 0 it runs in the relay process. Both paths call the same
`issue_batch`, so they produce the same certificates.

Each request comes back as one `SigningOutcome`: `Issued` (the UVCI and the HC1 text) or `Refused`
(why the data cannot make a valid DCC). Both are NamedTuples, so a worker's answer pickles about as
cheaply as plain tuples.

A worker holds the private key only in memory, handed over at start through the pool initializer.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from services.hcert import codec, keys, payload, uvci


@dataclass(frozen=True)
class CertificateRequest:
    """What one certificate needs; plain values so it travels to a worker process cheaply."""

    family_name: str
    given_name: str
    date_of_birth: str
    test_type: str
    rat_device_id: str | None
    method: str
    sample_collected_at: datetime
    outcome: str
    testing_centre: str
    issuer: str
    issued_at: int
    expires_at: int


class Issued(NamedTuple):
    """A signed certificate."""

    uvci: str
    qr: str  # the HC1 text the QR code holds


class Refused(NamedTuple):
    """A request that cannot make a valid DCC (intake let through data the DCC schema rejects)."""

    reason: str


SigningOutcome = Issued | Refused


def issue_batch(signer: codec.Signer, requests: list[CertificateRequest]) -> list[SigningOutcome]:
    """One outcome per request, in the order of `requests`."""
    out: list[SigningOutcome] = []
    for r in requests:
        certificate_id = uvci.new_uvci()
        try:
            dcc = payload.test_payload(
                family_name=r.family_name,
                given_name=r.given_name,
                date_of_birth=r.date_of_birth,
                test_type=r.test_type,
                rat_device_id=r.rat_device_id,
                method=r.method,
                sample_collected_at=r.sample_collected_at,
                outcome=r.outcome,
                testing_centre=r.testing_centre,
                issuer=r.issuer,
                uvci=certificate_id,
            )
            qr = codec.encode_hcert(dcc, signer=signer, issued_at=r.issued_at, expires_at=r.expires_at)
            out.append(Issued(certificate_id, qr))
        except ValueError as exc:
            out.append(Refused(str(exc)))
    return out


# --- worker process side ------------------------------------------------------------------------------

_worker_signer: codec.Signer | None = None


def _init_worker(private_key_pem: bytes, certificate_der: bytes, algorithm: str) -> None:
    global _worker_signer
    from cryptography import x509

    key, _ = keys.load_private_key_pem(private_key_pem)
    material = keys.SigningKeyMaterial(
        key=key, certificate=x509.load_der_x509_certificate(certificate_der), algorithm=algorithm
    )
    _worker_signer = codec.Signer(material)


def _issue_in_worker(requests: list[CertificateRequest]) -> list[SigningOutcome]:
    assert _worker_signer is not None
    return issue_batch(_worker_signer, requests)


# --- relay side ---------------------------------------------------------------------------------------


class CertificateSigner:
    """Signs batches with one key, in `processes` workers (0: in this process)."""

    def __init__(self, material: keys.SigningKeyMaterial, processes: int):
        self.material = material
        self._local = codec.Signer(material)
        self._pool = None
        self._processes = processes
        if processes > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(keys.private_key_pem(material.key), material.certificate_der, material.algorithm),
            )

    async def issue(self, requests: list[CertificateRequest]) -> list[SigningOutcome]:
        """One outcome per request, in the order of `requests`."""
        if not requests:
            return []
        if self._pool is None:
            return issue_batch(self._local, requests)
        # Split across the workers and this process, so every core that is free signs.
        parts = self._processes + 1
        size = -(-len(requests) // parts)
        chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
        loop = asyncio.get_running_loop()
        remote = [loop.run_in_executor(self._pool, _issue_in_worker, chunk) for chunk in chunks[1:]]
        local = issue_batch(self._local, chunks[0])
        try:
            results = await asyncio.gather(*remote)
        except Exception:  # noqa: BLE001 - a broken worker must not stop the feed: sign here instead
            self.close()
            return local + [item for chunk in chunks[1:] for item in issue_batch(self._local, chunk)]
        return local + [item for chunk in results for item in chunk]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
