"""The `make run` demo runs end to end against real result_svc and publish_svc (so the front door cannot rot),
prints no personal data, and writes the files the reference clients use; `make run`'s env files load in a
shell and hold only what they should."""

import asyncio
import csv
import os
import re
import stat
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import PIL.Image
import zxingcpp

from services.common.auth import Role
from services.gen.covidtest.result.v1 import result_service_pb2 as pb
from services.gen.covidtest.result.v1 import result_service_pb2_grpc
from services.gen.covidtest.type.v1 import verdict_pb2
from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from services.gen.covidtest.verify.v1 import verify_service_pb2_grpc
from tests.conftest import (
    make_principal,
    service_env,
    start_publish_svc,
    start_result_svc,
    start_verify_svc,
)
from tools import demo, localstack


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _personal_data_in(text: str, persons) -> list[str]:
    """Every piece of the persons' personal data found in `text`: names (whole, and each family and given
    name), birth dates and years, identity and phone numbers."""
    found = []
    for person in persons:
        words = person.full_name.split()
        for name in {person.full_name, words[0], words[-1]}:
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
                found.append(f"name {name!r}")
        year = person.date_of_birth[:4]
        for value in (person.date_of_birth, person.identity.number, person.phone):
            if value and value in text:
                found.append(f"{value!r} of {words[-1]}")
        if re.search(rf"(?<![\w-]){year}(?![\w-])", text):
            found.append(f"birth year {year}")
    return found


async def _record_csv(address: str, lab_token: str, path: Path) -> list[int]:
    """RecordResults of every row of the lab's CSV as the lab: the statuses."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    results = []
    for row in rows:
        tested_at = pb.ResultSubmission().tested_at
        tested_at.FromJsonString(row["tested_at"])
        results.append(
            pb.ResultSubmission(
                sample_barcode=row["sample_barcode"],
                outcome=f"OUTCOME_{row['outcome']}",
                tested_at=tested_at,
                method=row["method"],
                lab_reference=row["lab_reference"],
            )
        )
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await result_service_pb2_grpc.ResultServiceStub(channel).RecordResults(
            pb.RecordResultsRequest(request_id=str(uuid.uuid4()), results=results),
            metadata=(("authorization", f"Bearer {lab_token}"),),
        )
    return [r.status for r in reply.results]


async def _verify(address: str, device_token: str, qr: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await verify_service_pb2_grpc.VerifyServiceStub(channel).Verify(
            vpb.VerifyRequest(qr=qr), metadata=(("authorization", f"Bearer {device_token}"),)
        )
    return reply.verdict


async def test_demo_releases_a_pool_and_its_certificates_reach_the_feed(database_url, db, tmp_path):
    env = service_env(database_url, RELAY_POLL_SECONDS="0.05", BUNDLE_BUILD_SECONDS="0.5")
    running = await start_result_svc(env)
    publishing = await start_publish_svc(env)
    verifying = await start_verify_svc(env)
    files = tmp_path / "demo"
    try:
        operator = await make_principal(database_url, Role.OPERATOR)
        lines: list[str] = []
        outcome = await asyncio.to_thread(
            demo.run,
            f"127.0.0.1:{running.port}",
            f"127.0.0.1:{publishing.port}",
            f"127.0.0.1:{verifying.port}",
            operator["token"],
            lines.append,
            False,
            files,
        )
        # The lab's CSV holds results the demo's lab can record: its samples, still waiting.
        recorded = await _record_csv(f"127.0.0.1:{running.port}", outcome["lab_token"], outcome["lab_results_path"])
        # certificate-qr.txt is a released certificate that still verifies VALID.
        qr_verdict = await _verify(
            f"127.0.0.1:{verifying.port}", outcome["device_token"], outcome["certificate_qr_path"].read_text()
        )
    finally:
        await verifying.stop(0)
        await publishing.stop(0)
        await running.stop(0)
    assert outcome["verdicts"] == (verdict_pb2.VERDICT_VALID, verdict_pb2.VERDICT_REVOKED)
    assert outcome["offline_verdict"] == "REVOKED"  # from the signed checkpoint bundle, as an offline device
    assert len(outcome["events"]) == demo.POOL_SIZE
    assert all(e.certificate.qr.startswith("HC1:") for e in outcome["events"])
    assert len(outcome["sample_barcodes"]) == demo.POOL_SIZE
    assert sum("RESULTED" in line and "RELEASED" in line for line in lines) == demo.POOL_SIZE
    # "Result pending" before the lab's result: in the lookup, and as SAMPLE_REGISTERED events in the feed.
    assert any("citizen lookup before the result" in line and "REGISTERED" in line for line in lines)
    assert sum("SAMPLE_REGISTERED" in line and "result pending" in line for line in lines) == demo.POOL_SIZE
    events = await db.fetchval(
        "SELECT count(*) FROM outbox o JOIN samples s ON s.id = o.sample_id WHERE s.barcode = ANY($1::text[]) "
        "AND o.kind = 'RELEASED'",
        outcome["sample_barcodes"],
    )
    assert events == demo.POOL_SIZE

    # No personal data in anything the demo says: not the names, birth dates or years, identity or phone
    # numbers of any person it registered, nor a QR (whose payload holds the names and birth date).
    said = "\n".join(lines)
    assert len(outcome["persons"]) == demo.POOL_SIZE + len(demo.WAITING_NAMES)
    assert _personal_data_in(said, outcome["persons"]) == []
    assert "HC1:" not in said and "█" not in said and "▀" not in said
    assert "born" not in said

    # The printable certificate it names: a PDF whose printed QR is the first certificate's.
    document = outcome["document_path"]
    assert document.parent == files and any(str(document) in line for line in lines)
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", str(document), str(tmp_path / "page")], check=True)
    codes = zxingcpp.read_barcodes(PIL.Image.open(tmp_path / "page.png"), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [c.text for c in codes] == [outcome["events"][0].certificate.qr]

    # certificate-qr.txt: exactly the HC1 text (no newline) of the certificate that stays VALID; the same QR
    # drawn for a terminal beside it. Everything holding a QR is readable by its owner only.
    qr_file, terminal_file = outcome["certificate_qr_path"], outcome["certificate_qr_terminal_path"]
    assert qr_file == files / "certificate-qr.txt" and terminal_file == files / "certificate-qr-terminal.txt"
    assert qr_file.read_text() == outcome["valid_qr"] and outcome["valid_qr"].startswith("HC1:")
    assert outcome["valid_qr"] in {e.certificate.qr for e in outcome["events"][1:]}  # not the amended one
    assert qr_verdict == verdict_pb2.VERDICT_VALID
    assert "█" in terminal_file.read_text()
    for path in (document, qr_file, terminal_file):
        assert _mode(path) == 0o600, path

    # lab-results.csv: the reference lab uploader's format, one NEGATIVE row per sample left waiting.
    csv_path = outcome["lab_results_path"]
    assert csv_path == files / "lab-results.csv"
    text = csv_path.read_text()
    assert text.splitlines()[0] == "sample_barcode,outcome,tested_at,method,lab_reference"
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["sample_barcode"] for r in rows] == outcome["waiting_barcodes"] and len(rows) == 5
    assert not set(outcome["waiting_barcodes"]) & set(outcome["sample_barcodes"])
    now = datetime.now(UTC)
    for row in rows:
        assert row["outcome"] == "NEGATIVE" and row["method"] and row["lab_reference"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["tested_at"]), row["tested_at"]
        tested_at = datetime.fromisoformat(row["tested_at"].replace("Z", "+00:00"))
        assert now - timedelta(minutes=15) < tested_at < now
    assert recorded == [pb.RECORDING_STATUS_RECORDED] * 5  # waiting at the demo's lab until then
    assert _personal_data_in(text, outcome["persons"]) == []


def _sourced(path: Path) -> dict[str, str]:
    """The variables a shell has after `set -a; . FILE; set +a`."""
    out = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; env -0', "bash", str(path)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_env_files_load_in_a_shell_and_are_private(tmp_path):
    shown = {"lab_token": "ctk_lab-1_x", "partner_token": "ctk_partner", "device_token": "ctk_device"}
    ports = {"result_svc": 50051, "publish_svc": 50052, "verify_svc": 50053}
    clients = localstack.write_env_file(tmp_path / "clients.env", localstack.clients_env(ports, shown))
    assert _mode(clients) == 0o600
    assert {k: v for k, v in _sourced(clients).items() if k in localstack.clients_env(ports, shown)} == {
        "COVIDTEST_RESULT_ADDR": "127.0.0.1:50051",
        "COVIDTEST_PUBLISH_ADDR": "127.0.0.1:50052",
        "COVIDTEST_VERIFY_ADDR": "127.0.0.1:50053",
        "LAB_TOKEN": "ctk_lab-1_x",
        "PARTNER_TOKEN": "ctk_partner",
        "DEVICE_TOKEN": "ctk_device",
    }
    assert all(re.fullmatch(r"[A-Z_]+=\S+", line) for line in clients.read_text().splitlines())

    keys = {
        "PII_KEYS": "local1:ab+/cd==",
        "PII_PEPPER": "pe+p/er==",
        "SIGNING_KEYS_KEK": "never-for-the-operator",
        "SIGNING_KEYS_KEK_PUBLIC": "pub+lic=",
    }
    values = localstack.operator_env("postgresql://postgres@127.0.0.1:55432/covidtest", "redis://x:1/0", keys, "t")
    path = tmp_path / "operator.env"
    path.write_text("old")
    path.chmod(0o644)
    localstack.write_env_file(path, {**values, "ODD": "it's $HOME; `x`"})
    assert _mode(path) == 0o600  # also when the file existed with another mode
    loaded = _sourced(path)
    assert loaded["ODD"] == "it's $HOME; `x`"  # quoted, never expanded
    assert {k: loaded[k] for k in values} == values
    assert set(values) == {
        "DATABASE_URL",
        "REDIS_URL",
        "PII_KEYS",
        "PII_PEPPER",
        "SIGNING_KEYS_KEK_PUBLIC",
        "OPERATOR_TOKEN",
    }  # never SIGNING_KEYS_KEK, which only publish_svc holds


def test_the_summary_is_short_and_names_what_to_do_next():
    ports = {name: grpc_port for name, (grpc_port, _) in localstack.SERVICES.items()}
    text = localstack.summary(
        ports,
        "http://127.0.0.1:8090",
        "postgresql://postgres@127.0.0.1:55432/covidtest",
        "redis://127.0.0.1:56379/0",
        "ctk_T",
    )
    lines = text.splitlines()
    assert len(lines) <= 20 and max(len(line) for line in lines) <= 100
    for needed in ("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053", "http://127.0.0.1:8090", "ctk_T"):
        assert needed in text
    assert localstack.without_password("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert localstack.without_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    for needed in (".run/operator.env", ".run/clients.env", ".run/demo/", ".run/demo.log", "make stop", "make clean"):
        assert needed in text
