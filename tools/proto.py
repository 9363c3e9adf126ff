"""Generate the Python gRPC code for protos/ into services/gen/, or check that it is up to date.

    python tools/proto.py generate   # rebuild services/gen/ from protos/ (make proto)
    python tools/proto.py check      # exit 1 and list the files if services/gen/ is stale
    python tools/proto.py breaking   # exit 1 if protos/ breaks the last released contract (buf breaking)
    python tools/proto.py release V  # record protos/ as released version V (protos/released/vV.binpb)

The code is generated with grpc_tools.protoc (messages, type stubs and gRPC stubs). protoc writes
absolute imports such as ``from covidtest.type.v1 import person_pb2``; they are rewritten to
``services.gen.covidtest...`` so the generated modules import from the repository root without
putting services/gen on sys.path. google/rpc/* is only read (from third_party/) to resolve imports:
at run time it comes from the googleapis-common-protos package, so it is not generated here.

Uses only the standard library and grpc_tools, so it runs before anything else is installed; `breaking`
and `release` use the buf CLI pinned in package.json (node_modules/.bin/buf).

The released contract: every version deployed to partners is kept as a buf image (a FileDescriptorSet
with imports) under protos/released/, named by its version in protos/CHANGELOG.md. `breaking` builds
the current protos into an image and runs `buf breaking` (rules FILE: no field renumbered, renamed,
retyped or removed, no RPC or enum value removed, ...) against the newest one. Image against image,
because the workspace's two modules (protos/, third_party/) would otherwise be compared as two images.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"
THIRD_PARTY = REPO / "third_party"
GEN_DIR = REPO / "services" / "gen"
GEN_PACKAGE = "services.gen"
RELEASED_DIR = PROTO_ROOT / "released"
CHANGELOG = PROTO_ROOT / "CHANGELOG.md"
BUF = REPO / "node_modules" / ".bin" / "buf"
_VERSION_RE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\.binpb$")
INIT_TEXT = '"""Generated code. Never edit; rebuilt by make proto."""\n'

# `from covidtest.x import y` / `import covidtest.x` at the start of a line, and the module name
# protobuf gives the message classes (their __module__), so pickling and repr name the real module.
_IMPORT_RE = re.compile(r"^(\s*)(from|import)(\s+)covidtest\.", re.MULTILINE)
_MODULE_NAME_RE = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'covidtest\.")


def _proto_files() -> list[str]:
    """Every .proto under protos/, relative to it, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def _protoc(out_dir: Path) -> None:
    """Run grpc_tools.protoc over every proto, writing into out_dir."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError:
        sys.exit("tools/proto.py: grpc_tools is missing; install grpcio-tools into the venv first")

    files = _proto_files()
    if not files:
        sys.exit(f"tools/proto.py: no .proto files under {PROTO_ROOT}")
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    # The files are named relative to protos/ (their import paths), which protoc resolves
    # against the include paths, so the output does not depend on the working directory.
    status = protoc.main(args)
    if status != 0:
        sys.exit(f"tools/proto.py: protoc failed with status {status}")


def _drop_empty_grpc_modules(out_dir: Path) -> None:
    """Remove the *_pb2_grpc.py protoc writes for protos without a service (no stubs in them)."""
    for path in sorted(out_dir.rglob("*_pb2_grpc.py")):
        if "\nclass " not in path.read_text(encoding="utf-8"):
            path.unlink()


def _rewrite_imports(out_dir: Path) -> None:
    """Point absolute covidtest imports at services.gen.covidtest in every .py and .pyi."""
    for path in sorted(out_dir.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = path.read_text(encoding="utf-8")
        new = _IMPORT_RE.sub(rf"\1\2\3{GEN_PACKAGE}.covidtest.", text)
        new = _MODULE_NAME_RE.sub(rf"\1'{GEN_PACKAGE}.covidtest.", new)
        if new != text:
            path.write_text(new, encoding="utf-8", newline="\n")


def _add_init_files(out_dir: Path) -> None:
    """Make out_dir and every directory below it a regular package."""
    for directory in [out_dir, *sorted(p for p in out_dir.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").write_text(INIT_TEXT, encoding="utf-8", newline="\n")


def build(out_dir: Path) -> None:
    """Generate the complete services/gen tree into out_dir (an empty directory)."""
    _protoc(out_dir)
    _drop_empty_grpc_modules(out_dir)
    _rewrite_imports(out_dir)
    _add_init_files(out_dir)


def _tree(root: Path) -> set[str]:
    """Relative paths of the files under root, without Python byte-code caches."""
    if not root.is_dir():
        return set()
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def generate() -> int:
    """Rebuild services/gen/ from scratch, so removed protos leave nothing behind."""
    with tempfile.TemporaryDirectory(prefix="proto-gen-") as tmp:
        fresh = Path(tmp) / "gen"
        fresh.mkdir()
        build(fresh)  # on failure the existing services/gen stays as it was
        if GEN_DIR.exists():
            shutil.rmtree(GEN_DIR)
        GEN_DIR.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(fresh, GEN_DIR)
    count = len(_tree(GEN_DIR))
    print(f"generated {count} files into {GEN_DIR.relative_to(REPO)}/")
    return 0


def check() -> int:
    """Compare a fresh build with services/gen/ byte for byte; 1 if anything differs."""
    with tempfile.TemporaryDirectory(prefix="proto-check-") as tmp:
        fresh = Path(tmp) / "gen"
        fresh.mkdir()
        build(fresh)
        expected, actual = _tree(fresh), _tree(GEN_DIR)
        problems = []
        for rel in sorted(expected | actual):
            if rel not in actual:
                problems.append((rel, "missing"))
            elif rel not in expected:
                problems.append((rel, "no longer generated"))
            elif not filecmp.cmp(fresh / rel, GEN_DIR / rel, shallow=False):
                problems.append((rel, "differs"))
    gen = GEN_DIR.relative_to(REPO)
    if problems:
        for rel, what in problems:
            print(f"{gen}/{rel}: {what}")
        print(f"{gen}/ is out of date with protos/; run: make proto", file=sys.stderr)
        return 1
    print(f"{gen}/ is up to date")
    return 0


def released_images() -> list[Path]:
    """The released contracts' images, oldest version first."""
    found = [
        (tuple(int(n) for n in m.groups()), p)
        for p in RELEASED_DIR.glob("v*.binpb")
        if (m := _VERSION_RE.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def _buf(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        sys.exit("tools/proto.py: the buf CLI is missing; run npm ci (make node_modules/.installed) first")
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, check=False)


def breaking(workspace: Path = REPO, against: Path | None = None) -> int:
    """`buf breaking` of the workspace's protos against the newest released image; 1 with buf's findings."""
    images = released_images()
    against = against or (images[-1] if images else None)
    if against is None:
        print(f"no released contract under {RELEASED_DIR.relative_to(REPO)}/", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="proto-breaking-") as tmp:
        current = Path(tmp) / "current.binpb"
        built = _buf("build", "-o", str(current), cwd=workspace)
        if built.returncode != 0:
            print(built.stdout + built.stderr, file=sys.stderr)
            return 1
        compared = _buf("breaking", str(current), "--against", str(against.resolve()), cwd=workspace)
    if compared.returncode != 0:
        print(compared.stdout + compared.stderr, end="")
        print(
            f"protos/ breaks the released contract {against.name}: deployed clients would misread it. "
            "Add a new field, value or RPC instead (see protos/CHANGELOG.md)",
            file=sys.stderr,
        )
        return 1
    print(f"protos/ keeps the released contract {against.name}")
    return 0


def release(version: str) -> int:
    """Record the current protos as released `version` (x.y.z): its image under protos/released/, once
    protos/CHANGELOG.md has a section for it and nothing breaks the previous release."""
    target = RELEASED_DIR / f"v{version}.binpb"
    if not _VERSION_RE.match(target.name):
        sys.exit(f"tools/proto.py: {version!r} is not a version x.y.z")
    if target.exists():
        sys.exit(f"tools/proto.py: {target.relative_to(REPO)} exists; a released contract never changes")
    if not re.search(rf"^## {re.escape(version)}\b", CHANGELOG.read_text(encoding="utf-8"), re.MULTILINE):
        sys.exit(f"tools/proto.py: protos/CHANGELOG.md has no section '## {version}'")
    if released_images() and breaking() != 0:
        return 1
    built = _buf("build", "-o", str(target))
    if built.returncode != 0:
        sys.exit(built.stdout + built.stderr)
    print(f"released {target.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/proto.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("generate", "check", "breaking", "release"))
    parser.add_argument("version", nargs="?", help="release: the version x.y.z to record")
    args = parser.parse_args(argv)
    if args.command == "release":
        if not args.version:
            parser.error("release needs a version")
        return release(args.version)
    return {"generate": generate, "check": check, "breaking": breaking}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
