"""Generate the Python gRPC code for protos/ into services/gen/, or check that it is up to date.

    python tools/proto.py generate   # rebuild services/gen/ from protos/ (make proto)
    python tools/proto.py check      # exit 1 and list the files if services/gen/ is stale

The code is generated with grpc_tools.protoc (messages, type stubs and gRPC stubs). protoc writes
absolute imports such as ``from covidtest.type.v1 import person_pb2``; they are rewritten to
``services.gen.covidtest...`` so the generated modules import from the repository root without
putting services/gen on sys.path. google/rpc/* is only read (from third_party/) to resolve imports:
at run time it comes from the googleapis-common-protos package, so it is not generated here.

Uses only the standard library and grpc_tools, so it runs before anything else is installed.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"
THIRD_PARTY = REPO / "third_party"
GEN_DIR = REPO / "services" / "gen"
GEN_PACKAGE = "services.gen"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/proto.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("generate", "check"))
    args = parser.parse_args(argv)
    return generate() if args.command == "generate" else check()


if __name__ == "__main__":
    sys.exit(main())
