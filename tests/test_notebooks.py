"""Every chapter is published as a notebook beside its page (_ext/notebooks.py), with a first
cell that installs the book's package in Colab only, and the Colab button opens that notebook.
"""

import re
import sys
from types import ModuleType

import contract
import jupytext
import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient
from test_binder import toc_chapters

ROOT = contract.ROOT
sys.path.insert(0, str(ROOT / "_ext"))
import notebooks  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPOSITORY = CONFIG["repository"]
COLAB = CONFIG["launch_buttons"]["colab_url"].rstrip("/")


def notebook_chapters():
    """The chapters of the table of contents that are notebooks (have code)."""
    return [
        chapter for chapter in toc_chapters() if "kernelspec" in jupytext.read(chapter).metadata
    ]


def expected_colab_source():
    install = f"llmtrain @ git+{REPOSITORY['url']}@{REPOSITORY['branch']}"
    extras = notebooks.pinned_requirements(ROOT / "binder" / "requirements.txt", ["myst-nb"])
    return notebooks.colab_cell_source([install, *extras])


def run_cell(source):
    """Run a cell's source as IPython would, with magics recorded instead of run."""
    magics = []

    class Shell:
        def run_line_magic(self, name, line):
            magics.append((name, line))

    python = TransformerManager().transform_cell(source)
    exec(python, {"get_ipython": Shell})
    return magics


def test_the_colab_cell_does_nothing_outside_colab():
    assert "google.colab" not in sys.modules
    assert run_cell(expected_colab_source()) == []


def test_the_colab_cell_installs_the_package_and_the_pinned_extras_in_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", ModuleType("google.colab"))
    [(magic, line)] = run_cell(expected_colab_source())
    assert magic == "pip"
    url, branch = REPOSITORY["url"], REPOSITORY["branch"]
    assert line == f'install -q "llmtrain @ git+{url}@{branch}" "myst-nb==1.4.0"'


def test_the_colab_cell_runs_silently_in_a_plain_kernel():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(expected_colab_source())])
    NotebookClient(notebook, kernel_name="python3", timeout=60).execute()
    assert notebook.cells[0].outputs == []


def test_a_subdirectory_book_installs_from_its_folder():
    requirement = notebooks.package_requirement(
        "llmtrain", "https://github.com/o/r/", "dev", "book/"
    )
    assert requirement == "llmtrain @ git+https://github.com/o/r@dev#subdirectory=book"


def test_the_toc_has_notebook_chapters():
    assert len(notebook_chapters()) >= 20


@pytest.mark.book
def test_every_chapter_is_published_as_a_notebook_with_the_colab_cell_first(built):
    colab_source = expected_colab_source()
    for chapter in notebook_chapters():
        page = chapter.relative_to(ROOT).with_suffix("")
        published = nbformat.read(built.html / f"{page}.ipynb", as_version=4)
        nbformat.validate(published)
        first, *rest = published.cells
        assert (first.cell_type, first.source) == ("code", colab_source), page
        source = jupytext.read(chapter)
        code = [cell.source for cell in source.cells if cell.cell_type == "code"]
        assert [cell.source for cell in rest if cell.cell_type == "code"] == code, page
        assert len(rest) == len(source.cells), page
        assert all(not cell.get("outputs") for cell in published.cells), page
        assert published.metadata.kernelspec.name == "python3", page


@pytest.mark.book
def test_launch_and_download_buttons_open_the_published_notebook(built):
    org, repo = REPOSITORY["url"].rstrip("/").split("/")[-2:]
    for chapter in notebook_chapters():
        page = chapter.relative_to(ROOT).with_suffix("")
        html = (built.html / f"{page}.html").read_text()
        [colab] = re.findall(rf'href="({re.escape(COLAB)}/[^"]*)"', html)
        # The site is published at the root of the gh-pages branch, as in _build/html.
        assert colab == f"{COLAB}/github/{org}/{repo}/blob/gh-pages/{page}.ipynb", page
        assert (built.html / f"{page}.ipynb").is_file(), page
        [download] = re.findall(r'<a href="([^"]+)"[^>]*title="Download notebook file"', html)
        assert (built.html / page).parent.joinpath(download).resolve() == (
            built.html / f"{page}.ipynb"
        ).resolve(), page


@pytest.mark.book
def test_pages_without_code_have_no_published_notebook(built):
    for chapter in set(toc_chapters()) - set(notebook_chapters()):
        page = chapter.relative_to(ROOT).with_suffix("")
        assert not (built.html / f"{page}.ipynb").exists(), page
