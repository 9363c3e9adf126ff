"""The contract cannot break silently: buf breaking against the released image catches what would break a
deployed client, the changelog names every release, and the published retry policy is sound and works
in a real gRPC channel."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool

from services.gen.covidtest.verify.v1 import verify_service_pb2 as vpb
from tools import proto

ROOT = Path(__file__).resolve().parents[1]
SERVICE_CONFIG = ROOT / "protos" / "service_config.json"


def _workspace(tmp_path: Path) -> Path:
    """A copy of the buf workspace (protos/, third_party/, buf.yaml) to change."""
    for name in ("protos", "third_party"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("released"))
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _breaking(workspace: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = proto.breaking(workspace)
    return status, out.getvalue()


def test_the_current_protos_keep_the_released_contract():
    assert proto.released_images(), "no released image under protos/released/"
    assert _breaking(ROOT)[0] == 0


@pytest.mark.parametrize(
    ("file", "old", "new", "finding"),
    [
        # A field renumbered by mistake: every deployed client would read the name from the wrong tag.
        ("covidtest/type/v1/person.proto", "string given_name = 8;", "string given_name = 18;", "given_name"),
        # A field's type changed.
        ("covidtest/verify/v1/verify_service.proto", "string qr = 1;", "bytes qr = 1;", "qr"),
        # An RPC removed.
        (
            "covidtest/publish/v1/publish_service.proto",
            "rpc AckResultEvents(",
            "rpc AcknowledgeResultEvents(",
            "AckResultEvents",
        ),
    ],
)
def test_a_breaking_change_fails(tmp_path, file, old, new, finding):
    workspace = _workspace(tmp_path)
    _edit(workspace / "protos" / file, old, new)
    status, output = _breaking(workspace)
    assert status == 1
    assert finding in output and "breaks the released contract" in output


def test_an_added_field_is_compatible(tmp_path):
    workspace = _workspace(tmp_path)
    _edit(
        workspace / "protos" / "covidtest/type/v1/person.proto",
        "bool personal_data_erased = 9;",
        "bool personal_data_erased = 9;\n  // A new field.\n  string nickname = 10;",
    )
    assert _breaking(workspace)[0] == 0


def test_the_changelog_names_every_release_and_the_newest_is_released():
    changelog = (ROOT / "protos" / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (\d+\.\d+\.\d+) — \d{4}-\d{2}-\d{2}$", changelog, re.MULTILINE)
    assert sections, "no version sections"
    images = [p.name for p in proto.released_images()]
    for image in images:
        assert image.removeprefix("v").removesuffix(".binpb") in sections, f"{image} has no changelog section"
    # The newest section is the last released image: a release is recorded with its section.
    assert f"v{sections[0]}.binpb" == images[-1]


# --- the published retry policy -----------------------------------------------------------------------


def _config() -> dict:
    return json.loads(SERVICE_CONFIG.read_text(encoding="utf-8"))


def _services() -> dict[str, list]:
    """Every service of the contract, with its methods (from the generated descriptors)."""
    import services.gen.covidtest.admin.v1.admin_service_pb2  # noqa: F401
    import services.gen.covidtest.publish.v1.publish_service_pb2  # noqa: F401
    import services.gen.covidtest.result.v1.result_service_pb2  # noqa: F401
    import services.gen.covidtest.statistics.v1.statistics_service_pb2  # noqa: F401

    pool = descriptor_pool.Default()
    names = [
        "covidtest.result.v1.ResultService",
        "covidtest.admin.v1.AdminService",
        "covidtest.statistics.v1.StatisticsService",
        "covidtest.publish.v1.PublishService",
        "covidtest.verify.v1.VerifyService",
    ]
    return {name: list(pool.FindServiceByName(name).methods) for name in names}


def _policy_for(config: dict, service: str, method: str) -> dict | None:
    """The methodConfig gRPC applies to a method: the one naming the method, else the one naming its service."""
    exact = [m for m in config["methodConfig"] if {"service": service, "method": method} in m["name"]]
    whole = [m for m in config["methodConfig"] if {"service": service} in m["name"]]
    assert len(exact) <= 1 and len(whole) <= 1, f"{service}/{method} named twice"
    return (exact or whole or [None])[0]


def test_the_retry_policy_names_only_real_methods_and_covers_every_one():
    config, services = _config(), _services()
    for entry in config["methodConfig"]:
        for name in entry["name"]:
            assert name["service"] in services, name
            if "method" in name:
                assert name["method"] in [m.name for m in services[name["service"]]], name
    for service, methods in services.items():
        for method in methods:
            policy = _policy_for(config, service, method.name)
            assert policy is not None, f"{service}/{method.name} has no policy"
            retry = policy["retryPolicy"]
            # Only UNAVAILABLE is retried by the channel: the call did not reach a server that answered.
            # Every mutation carries a request_id, so even a retry after a lost answer changes nothing twice.
            assert retry["retryableStatusCodes"] == ["UNAVAILABLE"]
            assert 2 <= retry["maxAttempts"] <= 5
            if method.server_streaming:
                assert "timeout" not in policy, "a long-lived stream must not have a deadline"
            else:
                assert "timeout" in policy
            if method.input_type.fields_by_name.get("request_id") is None:
                assert not method.name.startswith(("Create", "Record", "Register", "Amend", "Withdraw")), method.name


class _FlakyVerify:
    """A Verify that answers UNAVAILABLE to its first `failures` calls."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    async def verify(self, request: vpb.VerifyRequest, context: grpc.aio.ServicerContext) -> vpb.VerifyResponse:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return vpb.VerifyResponse()


async def _call_through_policy(failures: int) -> tuple[grpc.StatusCode, int]:
    flaky = _FlakyVerify(failures)
    handler = grpc.method_handlers_generic_handler(
        "covidtest.verify.v1.VerifyService",
        {
            "Verify": grpc.unary_unary_rpc_method_handler(
                flaky.verify,
                request_deserializer=vpb.VerifyRequest.FromString,
                response_serializer=vpb.VerifyResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    options = [("grpc.service_config", SERVICE_CONFIG.read_text(encoding="utf-8")), ("grpc.enable_retries", 1)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            verify = channel.unary_unary(
                "/covidtest.verify.v1.VerifyService/Verify",
                request_serializer=vpb.VerifyRequest.SerializeToString,
                response_deserializer=vpb.VerifyResponse.FromString,
            )
            try:
                await verify(vpb.VerifyRequest(qr="HC1:x"))
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
    finally:
        await server.stop(0)
    return code, flaky.calls


async def test_a_channel_with_the_policy_retries_unavailable_within_its_attempts():
    attempts = _policy_for(_config(), "covidtest.verify.v1.VerifyService", "Verify")["retryPolicy"]["maxAttempts"]
    assert await _call_through_policy(attempts - 1) == (grpc.StatusCode.OK, attempts)
    # One more failure than the policy allows: the caller sees UNAVAILABLE after exactly maxAttempts calls.
    assert await _call_through_policy(attempts) == (grpc.StatusCode.UNAVAILABLE, attempts)
