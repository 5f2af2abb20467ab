"""Dependencies point down: ``apps.core`` holds framework helpers and imports no domain app;
no module in ``apps`` hides an import (a cycle, usually) inside a function; and the paths
with no acting person are taken from management commands only.

They read the source with ``ast``, so they judge the code as written, not what happens to be
imported when the tests run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"
CORE = APPS / "core"

# Django's documented place to connect signal receivers: ``AppConfig.ready`` runs once the
# app registry is ready, which importing the receivers at module level would precede.
READY_HOOK = "ready"

# Paths with no acting person: only operators at the shell may take them.
OPERATOR_ONLY = frozenset({"member_add_by_operator", "operator_access"})
# The platform acting on its own (no person), and the only modules that may: a hosted
# instance's upstream joins or leaves the gateway when its deployment is done or ends; a
# workspace's IdP provisions and deprovisions its people over SCIM.
PLATFORM_ONLY = frozenset({"platform_access", "member_add_by_platform"})
PLATFORM_CALLERS = frozenset({"hosting/services.py", "scim/services.py"})


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return []


def _sources(root: Path) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(APPS).as_posix()
        if "/migrations/" in f"/{relative}":
            continue
        yield relative, ast.parse(path.read_text(), filename=str(path))


def _is_domain(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "apps" and len(parts) > 1 and parts[1] != "core"


def core_imports_of_domain_apps(root: Path = CORE) -> list[str]:
    found = []
    for relative, tree in _sources(root):
        for node in ast.walk(tree):
            # ``from apps import workspaces`` names the app only among the imported names.
            domain = [module for module in _imported_modules(node) if _is_domain(module)]
            if domain:
                found.append(f"apps/{relative}:{node.lineno} imports {domain[0]}")
    return found


class _FunctionImports(ast.NodeVisitor):
    """Collects ``apps`` imports made inside a function (``ready`` of an AppConfig excepted)."""

    def __init__(self, relative: str) -> None:
        self.relative = relative
        self.found: list[str] = []
        self.functions: list[str] = []

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        modules = _imported_modules(node)
        inside = self.functions and not (self.relative.endswith("apps.py") and self.functions == [READY_HOOK])
        if inside and modules and modules[0].split(".")[0] == "apps":
            self.found.append(f"apps/{self.relative}:{node.lineno} imports {modules[0]} in {self.functions[-1]}()")

    visit_ImportFrom = visit_Import


def function_level_imports(root: Path = APPS) -> list[str]:
    found: list[str] = []
    for relative, tree in _sources(root):
        visitor = _FunctionImports(relative)
        visitor.visit(tree)
        found += visitor.found
    return found


def operator_only_calls(root: Path = APPS) -> list[str]:
    """Calls of the operator-only paths from anywhere but a management command."""
    found = []
    for relative, tree in _sources(root):
        if "/management/" in f"/{relative}":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in OPERATOR_ONLY or (name in PLATFORM_ONLY and relative not in PLATFORM_CALLERS):
                    found.append(f"apps/{relative}:{node.lineno} calls {name}")
    return found


def test_core_imports_no_domain_app():
    assert core_imports_of_domain_apps() == []


def test_no_module_in_apps_imports_apps_inside_a_function():
    assert function_level_imports() == []


def test_only_management_commands_act_without_a_person():
    assert operator_only_calls() == []


# --- The checks themselves catch what they are for ----------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_checks_catch_a_domain_import_in_core_and_a_hidden_import(tmp_path, monkeypatch):
    root = _tree(
        tmp_path,
        {
            "core/admin.py": "from apps.core.errors import RuleViolation\nfrom apps.rbac.access import Access\n",
            "core/api.py": "import apps.workspaces.models\n",
            "core/helpers.py": "from apps import core\nfrom apps import workspaces\n",
            "tokens/services.py": "import apps.core\n\ndef f():\n    from apps.audit import services\n",
            "tokens/apps.py": "class C:\n    def ready(self):\n        from apps.tokens import receivers\n",
            "tokens/other.py": "def ready():\n    from apps import x\n\nasync def g():\n    import apps.rbac\n",
            "tokens/typing_only.py": "import typing\nif typing.TYPE_CHECKING:\n    from apps.rbac import x\n",
            "workspaces/admin.py": "from apps.workspaces import services\nservices.member_add_by_operator(role=1)\n",
            "workspaces/management/commands/addmember.py": "member_add_by_operator(role=1)\n",
            "hosting/services.py": "platform_access(workspace)\n",
            "gateway/services.py": "platform_access(workspace)\n",
        },
    )
    monkeypatch.setattr(f"{__name__}.APPS", root)
    assert core_imports_of_domain_apps(root / "core") == [
        "apps/core/admin.py:2 imports apps.rbac.access",
        "apps/core/api.py:1 imports apps.workspaces.models",
        "apps/core/helpers.py:2 imports apps.workspaces",
    ]
    assert function_level_imports(root) == [
        "apps/tokens/other.py:2 imports apps in ready()",
        "apps/tokens/other.py:5 imports apps.rbac in g()",
        "apps/tokens/services.py:4 imports apps.audit in f()",
    ]
    assert operator_only_calls(root) == [
        "apps/gateway/services.py:1 calls platform_access",
        "apps/workspaces/admin.py:2 calls member_add_by_operator",
    ]
