"""The package's layers depend one way: model <- analysis, simulation, llm <- experiments <- cli.

Walks every module's imports (AST, so nothing is executed) and fails when a module imports a
layer above its own, a layer beside it (analysis, simulation and llm are independent of each
other), or the command line; and when a figure script reaches past the public API.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "moa_stability"

# Layer of each subpackage, and the layers it may import (besides its own).
ALLOWED = {
    "model": set(),
    "analysis": {"model"},
    "simulation": {"model"},
    "llm": {"model"},
    "experiments": {"model", "analysis", "simulation", "llm"},
    "cli": {"model", "analysis", "simulation", "llm", "experiments", "package"},
}
LAYERS = set(ALLOWED)


def _layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "package"


def _imported(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Absolute dotted names that ``path`` (or ``source`` placed there) imports, with lines."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    # Relative imports start from the module's package (for __init__, the package itself).
    here = ("moa_stability",) + path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module or ""
            names.append((node.lineno, module))
            # ``from . import x`` / ``from .. import analysis`` name a subpackage in the alias.
            names += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            target = node.args[0].value
            if target.startswith("."):
                dots = len(target) - len(target.lstrip("."))
                base = here[: len(here) - dots + 1]
                target = ".".join(base + (target.lstrip("."),))
            names.append((node.lineno, target))
    return names


def _target_layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "moa_stability":
        return None
    if len(parts) == 1:
        return "package"
    return parts[1] if parts[1] in LAYERS else None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "data" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_only_lower_layers(path):
    layer = _layer_of(path)
    if layer == "package":
        return  # the top-level __init__ re-exports the public API from every layer
    wrong = [
        f"line {line}: {name}"
        for line, name in _imported(path)
        if (target := _target_layer(name)) is not None
        and target != layer
        and target not in ALLOWED[layer]
    ]
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) imports a higher layer: {wrong}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_cli_knows_argparse(path):
    if _layer_of(path) == "cli":
        return
    names = [name for _, name in _imported(path)]
    assert "argparse" not in names, f"{path.relative_to(ROOT)} imports argparse"


FIGURES = sorted((ROOT / "paper_figures").glob("*.py"))


@pytest.mark.parametrize("path", FIGURES, ids=lambda p: p.name)
def test_figures_use_the_public_api(path):
    """Figures import ``moa_stability`` and its layer packages, never private names."""
    tree = ast.parse(path.read_text())
    private = [
        f"line {node.lineno}: {node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("moa_stability")
        for alias in node.names
        if alias.name.startswith("_") or any(p.startswith("_") for p in node.module.split("."))
    ]
    assert not private, f"{path.name} imports private names: {private}"


@pytest.mark.parametrize(
    ("source", "layer"),
    [
        ("from ..simulation.simulate import simulate", "simulation"),
        ("from .. import cli", "cli"),
        ("import moa_stability.experiments.sweep", "experiments"),
        ("from moa_stability.llm import service", "llm"),
    ],
)
def test_the_walker_sees_a_violation(source, layer):
    """The checker itself: these imports placed in a model module name a higher layer."""
    names = [name for _, name in _imported(PACKAGE / "model" / "loads.py", source)]
    assert layer in {_target_layer(name) for name in names}
