"""`make proto-descriptor`: the descriptor set Envoy's gRPC-JSON transcoder loads (docs/operations.md).

The test asks make for the target's buf command (`make -n`, which runs nothing), runs it into a temporary
file, and checks that the result is a plain FileDescriptorSet that holds the three public services with
every file they import (Envoy rejects a set with an unresolved import) and their HTTP bindings.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
BUF = REPO / "node_modules" / ".bin" / "buf"
# The services docs/operations.md names in the Envoy transcoder's `services`.
TRANSCODED = (
    "covidtest.result.v1.ResultService",
    "covidtest.publish.v1.PublishService",
    "covidtest.verify.v1.VerifyService",
)


def _buf_command(out: Path) -> list[str]:
    """The buf command line of `make proto-descriptor`, writing to `out`."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the test reads the proto-descriptor target with `make -n`", pytrace=False)
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "proto-descriptor", f"DESCRIPTOR={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("node_modules/.bin/buf ")]
    return shlex.split(line)


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory) -> descriptor_pb2.FileDescriptorSet:
    if not BUF.exists():
        pytest.fail("node_modules/.bin/buf is missing: run `npm ci` (make does it for `make lint`)", pytrace=False)
    out = tmp_path_factory.mktemp("descriptor") / "covidtest.binpb"
    command = _buf_command(out)
    assert "--as-file-descriptor-set" in command, "Envoy wants a FileDescriptorSet, not a buf image"
    assert "--exclude-imports" not in command, "Envoy needs every imported file in the set"
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _services(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    return {f"{f.package}.{s.name}": s for f in fds.file for s in f.service}


def test_descriptor_set_holds_the_transcoded_services(descriptor_set):
    services = _services(descriptor_set)
    missing = [name for name in TRANSCODED if name not in services]
    assert not missing, f"not in the descriptor set: {missing}"
    verify = services["covidtest.verify.v1.VerifyService"]
    assert "Verify" in {m.name for m in verify.method}


def test_descriptor_set_includes_every_import(descriptor_set):
    names = [f.name for f in descriptor_set.file]
    assert len(names) == len(set(names)), "a file appears twice"
    missing = sorted({dep for f in descriptor_set.file for dep in f.dependency} - set(names))
    assert not missing, f"imported but not in the set (Envoy would refuse it): {missing}"
    # Envoy reads google.rpc.Status details to convert errors (convert_grpc_status).
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= set(names)


def test_descriptor_set_carries_the_http_bindings(descriptor_set):
    verify = _services(descriptor_set)["covidtest.verify.v1.VerifyService"]
    [method] = [m for m in verify.method if m.name == "Verify"]
    if not method.options.HasExtension(annotations_pb2.http):
        pytest.fail("VerifyService.Verify has no google.api.http option in the descriptor set", pytrace=False)
    rule = method.options.Extensions[annotations_pb2.http]
    assert rule.post == "/v1/verify"
    assert rule.body == "*"
