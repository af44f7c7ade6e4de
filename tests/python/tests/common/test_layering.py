"""Production code carries no test or benchmark code: what every module under src/python/pm imports."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCES = Path("src/python/pm")
PRODUCTION = ("auth", "patient", "billing", "analytics", "gateway", "common")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules(*packages: str) -> dict[str, set[str]]:
    found = {
        str(path): imported_modules(path)
        for package in packages
        for path in sorted((SOURCES / package).rglob("*.py"))
    }
    assert len(found) > 20, f"the sources are not in the sandbox: {sorted(found)}"
    return found


def _from(module: str, *roots: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in roots)


def test_no_module_under_src_imports_pytest() -> None:
    every = [p.name for p in SOURCES.iterdir() if p.is_dir()]
    offenders = {
        path: sorted(m for m in imports if _from(m, "pytest", "_pytest"))
        for path, imports in modules(*every).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_production_packages_import_neither_bench_nor_test_code() -> None:
    offenders = {
        path: sorted(m for m in imports if _from(m, "pm.bench", "tests"))
        for path, imports in modules(*PRODUCTION).items()
    }
    assert {path: names for path, names in offenders.items() if names} == {}


SERVICES = ("auth", "patient", "billing", "analytics", "gateway")
SHAPE = ("config.py", "bootstrap.py", "main.py", "domain", "service_layer", "adapters", "entrypoints")


def test_every_service_has_the_same_shape_and_a_short_main() -> None:
    modules(*SERVICES)  # the sources are in the sandbox
    missing = {service: [n for n in SHAPE if not (SOURCES / service / n).exists()] for service in SERVICES}
    assert {service: names for service, names in missing.items() if names} == {}
    lines = {service: len((SOURCES / service / "main.py").read_text().splitlines()) for service in SERVICES}
    assert {service: n for service, n in lines.items() if n >= 30} == {}
