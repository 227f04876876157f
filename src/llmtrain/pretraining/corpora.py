"""Real text every reader already has: the docstrings and sources of Python's standard library.

A book about training on text needs text, and downloading a corpus would make the book depend
on a network and a licence. Every Python installation carries a few megabytes of English prose
written by hundreds of people: the docstrings of the standard library. This module reads them
from the library's source files, without importing anything, so the result does not depend on
how Python was started (``python -OO`` strips docstrings from imported modules, not from files).

The text is a pure function of the Python version: the book is executed with CPython 3.11.7,
and the modules below are old, pure-Python modules that bug-fix releases rarely touch, so other
3.11 releases give the same text (or very nearly). A different minor version (3.12, 3.13) gives
a slightly different corpus.
"""

from __future__ import annotations

import ast
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .._checks import check_int

__all__ = [
    "CODEC_MODULES",
    "HELD_OUT_MODULES",
    "STDLIB_MODULES",
    "TRAINING_MODULES",
    "CorpusDocument",
    "python_source",
    "stdlib_corpus",
    "stdlib_documents",
]

# Pure-Python modules with prose docstrings, present in every CPython 3.11 (none of them is
# split out by Linux distributions, unlike tkinter, turtle, lib2to3 or ensurepip). Sorted, so
# that the corpus has one order everywhere.
STDLIB_MODULES: tuple[str, ...] = (
    "_pydecimal",
    "abc",
    "base64",
    "bisect",
    "calendar",
    "cmd",
    "collections",
    "colorsys",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "difflib",
    "filecmp",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "genericpath",
    "getopt",
    "gettext",
    "glob",
    "heapq",
    "hmac",
    "imaplib",
    "mailbox",
    "ntpath",
    "numbers",
    "operator",
    "optparse",
    "pickle",
    "posixpath",
    "pprint",
    "queue",
    "quopri",
    "random",
    "sched",
    "secrets",
    "shlex",
    "smtplib",
    "statistics",
    "string",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "uuid",
    "warnings",
    "weakref",
)

# Machine-generated codec tables (``gencodec.py``): near-duplicates of one another, which is
# what the near-duplicate detection of the data chapter is for.
CODEC_MODULES: tuple[str, ...] = tuple(
    f"encodings.cp{n}" for n in (1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258, 437, 850)
)


# Source files the tokenization chapter trains its tokenizers on, and others it measures them
# on: code and prose mixed, as in the code-heavy mixtures of modern pretraining.
TRAINING_MODULES: tuple[str, ...] = (
    "argparse",
    "calendar",
    "dataclasses",
    "difflib",
    "fractions",
    "inspect",
    "statistics",
    "textwrap",
)
HELD_OUT_MODULES: tuple[str, ...] = ("heapq", "json.decoder", "random", "string")


@dataclass(frozen=True)
class CorpusDocument:
    """One document of a corpus: where it comes from, and its text."""

    name: str
    text: str


def _source(module: str) -> str:
    # The file itself, not importlib's spec: 3.11 freezes some modules (abc, posixpath ...)
    # into the interpreter, and their spec has no file.
    path = Path(sysconfig.get_paths()["stdlib"], *module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise LookupError(f"no Python source for module {module!r} in this installation")


@cache
def _docstrings(module: str) -> tuple[CorpusDocument, ...]:
    """The docstrings of a module, its classes and their functions, in source order."""
    tree = ast.parse(_source(module))
    found = []

    def visit(node, prefix: str) -> None:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            found.append(CorpusDocument(prefix, doc))
        for child in node.body:
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"{prefix}.{child.name}")

    visit(tree, module)
    return tuple(found)


def stdlib_documents(
    kind: str = "docstrings", modules: tuple[str, ...] | None = None
) -> list[CorpusDocument]:
    """Documents drawn from the Python standard library's own source files.

    ``kind="docstrings"``: one document per docstring (of a module, a class or a function) of
    ``modules`` (default ``STDLIB_MODULES``), named like ``"textwrap.TextWrapper.wrap"``, in
    module order and then source order. ``kind="modules"``: one document per module, its whole
    source file (default modules: ``STDLIB_MODULES`` and ``CODEC_MODULES``).

    Nothing is imported; the files are read and parsed with ``ast``. The same Python
    version gives the same documents (the book uses CPython 3.11.7).
    """
    if kind not in ("docstrings", "modules"):
        raise ValueError(f"kind must be 'docstrings' or 'modules', got {kind!r}")
    if modules is None:
        modules = STDLIB_MODULES if kind == "docstrings" else STDLIB_MODULES + CODEC_MODULES
    if isinstance(modules, str):
        raise TypeError(f"modules must be a sequence of module names, got the string {modules!r}")
    if kind == "modules":
        return [CorpusDocument(m, _source(m)) for m in modules]
    return [doc for m in modules for doc in _docstrings(m)]


def stdlib_corpus(max_chars: int | None = None) -> str:
    """One long text: every docstring of ``STDLIB_MODULES``, separated by blank lines.

    About 0.3 MB of English prose with some code, identical on every run for one Python
    version (CPython 3.11.7 for the book), read from the installation's own files, with no
    download. ``max_chars`` cuts it to at most that many characters (at a character, not a
    word, boundary).
    """
    text = "\n\n".join(doc.text for doc in stdlib_documents("docstrings"))
    if max_chars is not None:
        text = text[: check_int("max_chars", max_chars, 0)]
    return text


def python_source(modules: tuple[str, ...] = TRAINING_MODULES) -> str:
    """The whole source files of the named standard-library modules, joined by newlines in
    the given order (default ``TRAINING_MODULES``, about 0.5 MB)."""
    return "\n".join(doc.text for doc in stdlib_documents("modules", tuple(modules)))
