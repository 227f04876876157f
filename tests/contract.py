"""Read the algorithm <-> code <-> test contract out of the chapters, the package and the tests.

The contract, in full:

1. Every ``prf:algorithm`` block in ``chapters/`` has a ``:label:`` (``alg-...``) and a line
   ``**Implementation:** {py:func}`llmtrain....```, naming one or more package objects.
2. Every object so named exists and its docstring says ``Implements :prf:ref:`<label>```.
3. Every package object whose docstring says ``Implements :prf:ref:`<label>``` is named by
   the block with that label (no implementation without its block).
4. Every label has at least one test marked ``@pytest.mark.algorithm("<label>")``, and that
   test's code names one of the label's implementations; every marked label exists.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{prf:algorithm\}(?P<title>.*)$")
_LABEL = re.compile(r"^:label:\s*(?P<label>\S+)\s*$")
_IMPLEMENTATION = re.compile(r"^\*\*Implementation:\*\*(?P<refs>.*)$")
_PY_REF = re.compile(r"\{py:(?:func|class|obj|meth)\}`~?(?P<target>[\w.]+)`")
_IMPLEMENTS = re.compile(r"Implements\s+:prf:ref:`(?P<label>[^`]+)`")
LABEL_FORM = re.compile(r"^alg-[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass
class Block:
    """One ``prf:algorithm`` block as written in a chapter."""

    path: Path
    line: int
    title: str
    label: str | None = None
    implementations: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(text: str, path: Path) -> list[Block]:
    """All ``prf:algorithm`` blocks of a MyST file, with their labels and named objects."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence = match["fence"]
        block = Block(path=path, line=i + 1, title=match["title"].strip())
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            if label := _LABEL.match(stripped):
                block.label = label["label"]
            if implementation := _IMPLEMENTATION.match(stripped):
                block.implementations += _PY_REF.findall(implementation["refs"])
            i += 1
        blocks.append(block)
        i += 1
    return blocks


def chapter_blocks(root: Path = ROOT) -> list[Block]:
    blocks = []
    for path in sorted((root / "chapters").rglob("*.md")):
        blocks += parse_blocks(path.read_text(encoding="utf-8"), path)
    return blocks


def package_implementations(package: str = "llmtrain") -> dict[str, dict[str, object]]:
    """``{label: {public dotted name: object}}`` for every docstring that says it implements
    a block. An object re-exported by a package is listed under each public name."""
    found: dict[str, dict[str, object]] = {}
    root = importlib.import_module(package)
    modules = [root] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")
    ]
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            for label in _IMPLEMENTS.findall(inspect.getdoc(obj) or ""):
                found.setdefault(label, {})[f"{module.__name__}.{name}"] = obj
    return found


@dataclass
class MarkedTest:
    path: Path
    name: str
    labels: list[str]
    source: str


def marked_tests(root: Path = ROOT) -> list[MarkedTest]:
    """Tests decorated with ``@pytest.mark.algorithm(...)``, read from the source."""
    tests = []
    for path in sorted((root / "tests").rglob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and ast.unparse(decorator.func) == "pytest.mark.algorithm"
                ):
                    labels = [a.value for a in decorator.args if isinstance(a, ast.Constant)]
                    source = ast.get_source_segment(text, node) or ""
                    tests.append(MarkedTest(path, node.name, labels, source))
    return tests


def violations(blocks, implementations, tests) -> list[str]:
    """Every way in which the chapters, the package and the tests break the contract."""
    problems = []
    by_label: dict[str, Block] = {}
    for block in blocks:
        if block.label is None:
            problems.append(f"{block.where()}: prf:algorithm '{block.title}' has no :label:")
            continue
        if not LABEL_FORM.match(block.label):
            problems.append(f"{block.where()}: label {block.label!r} is not of the form alg-name")
        if block.label in by_label:
            problems.append(f"{block.where()}: label {block.label!r} is used twice")
        by_label[block.label] = block
        if not block.implementations:
            problems.append(
                f"{block.where()}: {block.label} has no '**Implementation:** {{py:func}}`...`' line"
            )
        named = implementations.get(block.label, {})
        for target in block.implementations:
            if target not in named:
                problems.append(
                    f"{block.where()}: {block.label} names {target}, whose docstring does not "
                    f"say 'Implements :prf:ref:`{block.label}`' (or which does not exist)"
                )
    for label, objects in implementations.items():
        block = by_label.get(label)
        if block is None:
            names = ", ".join(sorted(objects))
            problems.append(f"{names} implements {label!r}, but no chapter has that block")
            continue
        # An object re-exported under several names needs to be named under one of them.
        for obj in {id(o): o for o in objects.values()}.values():
            aliases = sorted(n for n, o in objects.items() if o is obj)
            if not set(aliases) & set(block.implementations):
                problems.append(
                    f"{aliases[0]} implements {label}, but {block.where()} does not name it"
                )
    tested: dict[str, list[MarkedTest]] = {}
    for test in tests:
        for label in test.labels:
            tested.setdefault(label, []).append(test)
            if label not in by_label:
                problems.append(f"{test.path.name}::{test.name} is marked for unknown {label!r}")
    for label, block in by_label.items():
        short_names = {target.rsplit(".", 1)[-1] for target in block.implementations}
        relevant = [
            t
            for t in tested.get(label, [])
            if any(re.search(rf"\b{re.escape(n)}\b", t.source) for n in short_names)
        ]
        if not relevant:
            problems.append(
                f"{block.where()}: {label} has no test marked @pytest.mark.algorithm({label!r}) "
                f"that calls {' or '.join(sorted(short_names)) or 'its implementation'}"
            )
    return problems
