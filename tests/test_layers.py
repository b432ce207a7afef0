"""The package's layers (docs/design.md, "Layers"): no module imports one above its own layer.

Every ``import`` and ``from ... import`` of an ``mlzsl`` module is read from the source (inside
functions too: a lazy import is still an arrow), so the test needs nothing importable.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mlzsl"

# top-level module or sub-package of mlzsl -> its layer; a module may import its own layer or below
LAYERS: dict[str, int] = {
    # 0 foundations: errors, settings, labels, the metric formulas
    "errors": 0,
    "files": 0,
    "runtime": 0,
    "progress": 0,
    "labels": 0,
    "config": 0,
    "distributed": 0,
    "metrics": 0,
    "safe_pickle": 0,
    # 1 building blocks, each on its own: the protocol, label vectors, backbones, data sources
    "protocol": 1,
    "compare": 1,
    "images": 1,
    "embeddings": 1,
    "backbones": 1,
    "datasets": 1,
    # 2 what is built from blocks: models, stored features
    "models": 2,
    "store": 2,
    # 3 inference: the checkpoint record, scoring and evaluation, both taggers, ready models
    "inference": 3,
    # 4 training: the trainer and its losses
    "training": 4,
    # 5 applications of the library
    "demo": 5,
    "bench": 5,
    "report": 5,
    "server": 5,
    # 6 the command line
    "cli": 6,
    "__main__": 6,
}


def _unit(module: str) -> str:
    """``mlzsl.store.extract`` -> ``store``; ``mlzsl`` (the version and facade) -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _imports(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every mlzsl module the source of ``module`` imports."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("mlzsl")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("mlzsl"):
                found.append((node.lineno, target))
    return found


def _upward(module: str, source: str, is_package: bool = False) -> list[str]:
    own = LAYERS[_unit(module)]
    return [
        f"line {line}: {target} (layer {LAYERS[_unit(target)]})"
        for line, target in _imports(module, source, is_package)
        if _unit(target) and LAYERS[_unit(target)] > own
    ]


def _sources() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {_unit(_module(p)) for p in _sources()}
    assert units - set(LAYERS) == set(), "add new modules to LAYERS and to docs/design.md"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_goes_up_a_layer(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    upward = _upward(_module(path), source, path.name == "__init__.py")
    assert upward == [], f"{path.relative_to(PACKAGE)} imports above its layer: {upward}"


def test_the_walker_finds_upward_relative_and_lazy_imports() -> None:
    source = """
from mlzsl.labels import LabelSet
from ..training.engine import fit
def later():
    import mlzsl.cli
"""
    assert _upward("mlzsl.store.fake", source) == [
        "line 3: mlzsl.training.engine (layer 4)",
        "line 5: mlzsl.cli (layer 6)",
    ]
    assert _upward("mlzsl.cli.fake", source) == []
