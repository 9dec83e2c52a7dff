"""The house has three floors: ``shared`` < ``agent`` | ``collector`` < ``edgemeter``.

``lint-imports`` (run by ``make lint``) checks real imports; this test also catches what an import
graph misses: a peer named by a module-path string (``importlib.import_module("collector.x")``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS = {"agent": "collector", "collector": "agent", "shared": "agent|collector"}


def _strings_and_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append(node.value)
    return found


@pytest.mark.parametrize("package", sorted(PEERS))
def test_no_module_names_a_package_it_must_not_stand_on(package: str) -> None:
    """Neither an import nor a module path in a string (``"collector.x"``, ``"agent"``); the peers
    not even in a docstring (the contract may document how its registries name plugins)."""
    peer = PEERS[package]
    whole_name = re.compile(rf"^({peer})(\.\w+)*(:\w+)?$")
    dotted = re.compile(rf"(?<![\w.])({peer})\.[a-z_]\w*")
    offenders = [
        f"{path.relative_to(REPO)}: {text.strip()[:60]!r}"
        for path in sorted((REPO / package).rglob("*.py"))
        for text in _strings_and_imports(path)
        if whole_name.match(text.strip()) or (package != "shared" and dotted.search(text))
    ]
    assert not offenders, "\n".join(offenders)
