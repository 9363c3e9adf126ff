"""The rooms under services/ and who may import whom (docs/design.md, "Rooms").

Every import in every module under services/ (module level or inside a function) is read from the
source with `ast`, so an edge added anywhere makes this fail, before any code runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parent.parent / "services"

# The rooms each room may import (besides itself). The three services and admin are leaves: they stand
# on the shared rooms and never on each other. common is plumbing under everything.
ALLOWED: dict[str, set[str]] = {
    "common": {"gen"},
    "hcert": {"common", "gen"},
    "registry": {"common", "hcert", "gen"},
    # admin's operator CLI exports the statistics as CSV (the same figures, the same suppression).
    "admin": {"common", "hcert", "registry", "statistics", "gen"},
    "result_svc": {"common", "hcert", "registry", "gen"},
    "publish_svc": {"common", "hcert", "registry", "gen"},
    "verify_svc": {"common", "hcert", "registry", "gen"},
    # The health department's figures: a leaf hosted by result_svc, over the record's tables.
    "statistics": {"common", "gen"},
    # The HTTP/JSON gateway forwards to the services over gRPC: it needs the contract, never their code.
    "gateway": {"common", "gen"},
}
# The one composition point: the result_svc process also serves AdminService and StatisticsService.
COMPOSITION = {("services.result_svc.__main__", "admin"), ("services.result_svc.__main__", "statistics")}
SERVICE_ROOMS = {"result_svc", "publish_svc", "verify_svc", "admin", "gateway", "statistics"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICES.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_rooms(path: Path) -> set[str]:
    """The rooms (services.<room>) that a module imports, resolving relative imports too."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            elif node.module:
                names = [node.module]
            if names == ["services"]:  # `from services import x`: x is the room
                names = [f"services.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def _modules() -> list[Path]:
    return sorted(p for p in SERVICES.rglob("*.py") if "gen" not in p.relative_to(SERVICES).parts[:1])


def forbidden_edges() -> list[str]:
    edges = []
    for path in _modules():
        module = _module_name(path)
        parts = module.split(".")
        if len(parts) < 2:
            continue  # services/__init__.py
        room = parts[1]
        for target in sorted(_imported_rooms(path) - {room}):
            if target not in ALLOWED.get(room, set()) and (module, target) not in COMPOSITION:
                edges.append(f"{module} imports services.{target}")
    return edges


def test_every_room_has_a_place_in_the_layering():
    rooms = {p.name for p in SERVICES.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms - {"gen"} == set(ALLOWED), "a new room under services/ needs its entry in ALLOWED and docs/design.md"


def test_no_service_imports_another_and_shared_rooms_import_no_service():
    assert forbidden_edges() == []


def test_the_check_sees_an_edge_added_back(tmp_path, monkeypatch):
    # The walker must see every import form that could add an edge back.
    for source in (
        "from services.result_svc.validation import utcnow\n",
        "def f():\n    import services.admin.servicer\n",
        "from services import verify_svc\n",
        "from ..admin import servicer\n",
    ):
        room = tmp_path / "services" / "publish_svc"
        room.mkdir(parents=True, exist_ok=True)
        (room / "probe.py").write_text(source)
        monkeypatch.setattr(__import__(__name__, fromlist=["SERVICES"]), "SERVICES", tmp_path / "services")
        assert _imported_rooms(room / "probe.py") & SERVICE_ROOMS, source
        assert forbidden_edges() == [
            f"services.publish_svc.probe imports services.{_imported_rooms(room / 'probe.py').pop()}"
        ]


@pytest.mark.parametrize("room", ["common", "hcert", "registry"])
def test_shared_rooms_never_depend_on_a_service(room):
    for path in sorted((SERVICES / room).rglob("*.py")):
        assert not _imported_rooms(path) & SERVICE_ROOMS, path
