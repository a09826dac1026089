"""What the code needs from the deployment, found by reading the code (``ast``).

The deployment tests compare this with what Terraform declares, so the two
cannot drift apart silently: a new entry point without a function, a secret
read without a grant, a topic published without a declaration all fail.

Nothing is imported or executed: the code is parsed, so the analysis works
while modules are half-written and never needs the services running.

Reachability is a call graph over top-level functions and classes of the
project's own modules (``functions``, ``spreadpilot``, ``sidecar``): from an
entry point, every project name it references (directly, through a module
attribute such as ``runtime.signal_poller``, or through an import, re-exports
included) is visited; a class counts as a whole. That over-approximates a
little (a whole class, not the methods actually called) and never misses a
reference written in the code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIRS = {
    "functions": ROOT / "functions",
    "spreadpilot": ROOT / "shared" / "spreadpilot",
    "sidecar": ROOT / "sidecar",
}
# Modules that define secrets rather than read them.
DEFINING_MODULES = frozenset({"spreadpilot.secrets", "spreadpilot.config"})
FRAMEWORK_DECORATORS = frozenset({"http", "cloud_event", "typed"})
SECRET_GETTERS = frozenset({"get_secret", "get", "settings_with_secrets"})


def _module_name(package: str, base: Path, path: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    constants: dict[str, str] = field(default_factory=dict)


def _import_bindings(
    nodes: Iterable[ast.stmt], module: str, is_package: bool
) -> dict[str, tuple[str, str | None]]:
    """name -> (module, symbol or None for the module itself)."""
    out: dict[str, tuple[str, str | None]] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = (alias.name, None)
                else:
                    top = alias.name.split(".")[0]
                    out[top] = (top, None)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                out[alias.asname or alias.name] = (base, alias.name)
    return out


class CodeMap:
    """The project's modules, parsed, with the questions the tests ask."""

    def __init__(self, packages: dict[str, Path] | None = None) -> None:
        self.modules: dict[str, Module] = {}
        for package, base in (packages or PACKAGE_DIRS).items():
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*.py")):
                name = _module_name(package, base, path)
                try:
                    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
                except SyntaxError:
                    continue  # a file being written right now; other tests catch it
                mod = Module(name, path, tree)
                is_package = path.name == "__init__.py"
                mod.imports = _import_bindings(tree.body, name, is_package)
                for node in tree.body:
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                        mod.defs[node.name] = node
                    elif isinstance(node, ast.Assign | ast.AnnAssign):
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        value = node.value
                        if isinstance(value, ast.Constant) and isinstance(value.value, str):
                            for target in targets:
                                if isinstance(target, ast.Name):
                                    mod.constants[target.id] = value.value
                self.modules[name] = mod

    # --- resolution -------------------------------------------------------

    def _resolve(self, module: str, symbol: str | None, depth: int = 0) -> tuple[str, str | None]:
        """Follow re-exports until the module that defines ``symbol``."""
        if symbol is None or depth > 10:
            return module, symbol
        candidate = f"{module}.{symbol}"
        if candidate in self.modules:
            return candidate, None
        mod = self.modules.get(module)
        if mod is None or symbol in mod.defs or symbol in mod.constants:
            return module, symbol
        if symbol in mod.imports:
            target_module, target_symbol = mod.imports[symbol]
            return self._resolve(target_module, target_symbol, depth + 1)
        return module, symbol

    def _binding(
        self, mod: Module, name: str, local_imports: dict[str, tuple[str, str | None]]
    ) -> tuple[str, str | None] | None:
        if name in local_imports:
            return self._resolve(*local_imports[name])
        if name in mod.defs or name in mod.constants:
            return mod.name, name
        if name in mod.imports:
            return self._resolve(*mod.imports[name])
        return None

    # --- reachability -------------------------------------------------------

    def reachable(self, module: str, symbol: str | None) -> set[tuple[str, str | None]]:
        """Every (module, top-level name) reachable from ``module.symbol``."""
        seen: set[tuple[str, str | None]] = set()
        todo = [(module, symbol)]
        while todo:
            key = todo.pop()
            if key in seen or key[0] not in self.modules:
                continue
            seen.add(key)
            todo.extend(self._references(*key))
        return seen

    def _nodes_of(self, module: str, symbol: str | None) -> list[ast.AST]:
        mod = self.modules[module]
        if symbol is None:
            return [mod.tree]
        node = mod.defs.get(symbol)
        return [node] if node is not None else []

    def _references(self, module: str, symbol: str | None) -> Iterator[tuple[str, str | None]]:
        mod = self.modules[module]
        for root in self._nodes_of(module, symbol):
            local_imports = _import_bindings(
                [n for n in ast.walk(root) if isinstance(n, ast.Import | ast.ImportFrom)],
                module,
                mod.path.name == "__init__.py",
            )
            if symbol is None:
                # A module used as a whole: everything it defines.
                yield from ((module, name) for name in mod.defs)
            module_bases: set[int] = set()
            for node in ast.walk(root):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    bound = self._binding(mod, node.value.id, local_imports)
                    if bound is not None and bound[1] is None:
                        # ``runtime.signal_poller``: the attribute, not all of ``runtime``.
                        module_bases.add(id(node.value))
                        yield self._resolve(bound[0], node.attr)
                        continue
                if (
                    isinstance(node, ast.Name)
                    and node.id != symbol
                    and id(node) not in module_bases
                ):
                    bound = self._binding(mod, node.id, local_imports)
                    if bound is not None:
                        yield bound

    # --- questions the tests ask -----------------------------------------------

    def secrets_read(
        self, keys: Iterable[tuple[str, str | None]], settings_fields: dict[str, str]
    ) -> set[str]:
        """Secret names read by the given code: ``SecretName.X``, a settings field, or
        a literal name handed to a secret getter.

        ``settings_fields`` maps a ``Settings`` field name to its secret name.
        """
        names = set(settings_fields.values())
        found: set[str] = set()
        for module, symbol in keys:
            if module in DEFINING_MODULES:
                continue
            for root in self._nodes_of(module, symbol) if symbol else []:
                for node in ast.walk(root):
                    if isinstance(node, ast.Attribute):
                        if (
                            isinstance(node.value, ast.Name)
                            and node.value.id == "SecretName"
                            and node.attr in names
                        ):
                            found.add(node.attr)
                        elif node.attr in settings_fields:
                            found.add(settings_fields[node.attr])
                    elif isinstance(node, ast.Call):
                        func = node.func
                        callee = func.attr if isinstance(func, ast.Attribute) else None
                        callee = func.id if isinstance(func, ast.Name) else callee
                        if callee in SECRET_GETTERS:
                            for arg in node.args:
                                if isinstance(arg, ast.Constant) and arg.value in names:
                                    found.add(str(arg.value))
        return found

    def topics_published(self, keys: Iterable[tuple[str, str | None]]) -> set[str]:
        """Pub/Sub topic names the given code refers to: constants named ``*TOPIC*``
        (module or class level, used by name), ``topic=`` keywords and defaults.
        """
        found: set[str] = set()
        for module, symbol in keys:
            mod = self.modules[module]
            if symbol is not None and symbol in mod.constants and "TOPIC" in symbol.upper():
                found.add(mod.constants[symbol])
            for root in self._nodes_of(module, symbol) if symbol else []:
                for node in ast.walk(root):
                    if isinstance(node, ast.keyword) and node.arg and "topic" in node.arg:
                        if isinstance(node.value, ast.Constant) and isinstance(
                            node.value.value, str
                        ):
                            found.add(node.value.value)
                    elif isinstance(node, ast.arguments):
                        params = [*node.posonlyargs, *node.args]
                        for arg, default in zip(
                            params[len(params) - len(node.defaults) :], node.defaults, strict=True
                        ):
                            if (
                                "topic" in arg.arg
                                and isinstance(default, ast.Constant)
                                and isinstance(default.value, str)
                            ):
                                found.add(default.value)
                        for arg, kw_default in zip(node.kwonlyargs, node.kw_defaults, strict=True):
                            if (
                                "topic" in arg.arg
                                and isinstance(kw_default, ast.Constant)
                                and isinstance(kw_default.value, str)
                            ):
                                found.add(kw_default.value)
                    elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                        for target in node.targets:
                            if (
                                isinstance(target, ast.Name)
                                and "TOPIC" in target.id.upper()
                                and isinstance(node.value.value, str)
                            ):
                                found.add(node.value.value)
        return found

    def all_topics(self) -> set[str]:
        """Every topic named anywhere in the project's code (module-level scan)."""
        keys = [(name, symbol) for name, mod in self.modules.items() for symbol in [*mod.defs]] + [
            (name, const)
            for name, mod in self.modules.items()
            for const in mod.constants
            if "TOPIC" in const.upper()
        ]
        return self.topics_published(keys)

    def package_keys(self, package: str) -> set[tuple[str, str | None]]:
        """Everything reachable from every top-level name of ``package`` (a process)."""
        keys: set[tuple[str, str | None]] = set()
        for name, mod in self.modules.items():
            if name == package or name.startswith(package + "."):
                for symbol in mod.defs:
                    keys |= self.reachable(name, symbol)
                keys |= {(name, c) for c in mod.constants}
        return keys


def entry_points(main_py: Path) -> dict[str, str]:
    """functions-framework targets in ``main_py``: name -> decorator kind."""
    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    found: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            kind = None
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "functions_framework"
            ):
                kind = target.attr
            elif isinstance(target, ast.Name):
                kind = target.id
            if kind in FRAMEWORK_DECORATORS:
                found[node.name] = kind
    return found
