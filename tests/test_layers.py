"""The layering contracts (pyproject.toml, checked by `make lint`) place every module of the
bridge: a module no layer names would be free to import anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["tool"]["importlinter"]["contracts"]


def _layered() -> set[str]:
    [layers] = [c for c in _contracts() if c["type"] == "layers"]
    names: set[str] = set()
    for layer in layers["layers"]:
        for part in layer.replace("|", ":").split(":"):
            names.add(part.strip())
    return names


def _bridge_modules() -> set[str]:
    """The bridge's own modules and subpackages, one level down (`bridge.x`)."""
    found = set()
    for path in (ROOT / "bridge").iterdir():
        if path.name.startswith("_") or path.name.startswith("."):
            continue
        if path.suffix == ".py":
            found.add(f"bridge.{path.stem}")
        elif path.is_dir() and (path / "__init__.py").exists():
            found.add(f"bridge.{path.name}")
    return found


def test_every_bridge_module_is_in_a_layer():
    missing = sorted(_bridge_modules() - _layered())
    assert not missing, f"add these to a layer of the layers contract in pyproject.toml: {missing}"


def test_only_the_composition_root_may_import_commands_and_connectors():
    [root_only] = [
        c for c in _contracts() if set(c.get("forbidden_modules", ())) == {"commands", "connectors"}
    ]
    missing = sorted(
        _bridge_modules() - {"bridge.app", "bridge.check"} - set(root_only["source_modules"])
    )
    assert not missing, f"add these to the composition-root contract's source_modules: {missing}"


def test_the_contracts_have_no_exceptions():
    assert all("ignore_imports" not in c for c in _contracts())


def test_storage_and_commands_are_layered_below_and_above_the_core():
    layered = _layered()
    assert {"storage", "commands", "bridge.types", "bridge.errors"} <= layered


def test_only_storage_may_import_sqlalchemy():
    [contract] = [c for c in _contracts() if c.get("forbidden_modules") == ["sqlalchemy"]]
    assert set(contract["source_modules"]) == {"bridge", "commands", "connectors"}


def test_a_query_written_outside_storage_breaks_the_lint(tmp_path: Path):
    # The contract is only worth something if the lint run fails when a service builds SQL.
    for name in ("bridge", "commands", "connectors", "storage"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    service = tmp_path / "bridge" / "services" / "contacts.py"
    service.write_text(service.read_text() + "\nfrom sqlalchemy import text  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "Only storage builds SQL" in done.stdout
    assert "bridge.services.contacts -> sqlalchemy" in done.stdout
