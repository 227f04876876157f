"""Publish every chapter as a notebook beside its page, for the download button and Colab.

At the end of an HTML build, each page whose source is a MyST Markdown notebook is also
written as ``<page>.ipynb`` next to ``<page>.html`` (jupytext's conversion of the source, no
outputs), with one cell prepended that, in Colab only, installs the book's package from the
repository and the extra packages the chapters import (pinned as in ``binder/``).

On each page, the download dropdown's ``.ipynb`` entry then points at that notebook (the theme's
own entry is the executed notebook, without the Colab cell), and the Colab launch button opens
the same notebook from the published site: Colab opens notebooks from GitHub, and the site is
published to the ``gh-pages`` branch (``ghp-import -n -p -f _build/html``, as Jupyter Book
documents), where ``<page>.ipynb`` lies at the same path as in ``_build/html``. The theme's
own Colab link points at the chapter's ``.md`` in the repository, which Colab cannot open.
"""

import re
import tomllib
from pathlib import Path

import jupytext
import nbformat
from sphinx.errors import ExtensionError

# The branch that ghp-import publishes the built site to (its default).
PAGES_BRANCH = "gh-pages"
# Packages the chapters import that neither Colab nor the book's package brings: myst_nb.glue.
# Their pins are read from binder/requirements.txt, the environment a live chapter needs.
COLAB_EXTRAS = ("myst-nb",)
COLAB_CELL_ID = "colab-install"


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(requirements, names):
    """The `name==version` lines of a requirements file for the given package names."""
    pins = {}
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.split("#", 1)[0].strip())
        if match:
            pins[_normalise(match[1])] = match[0]
    missing = [name for name in names if _normalise(name) not in pins]
    if missing:
        raise ExtensionError(f"{requirements} pins none of {missing} (needed by Colab)")
    return [pins[_normalise(name)] for name in names]


def package_requirement(package, repository_url, branch, path_to_book=""):
    """A pip requirement that installs `package` from the repository's branch."""
    if not repository_url.startswith("https://"):
        raise ExtensionError(f"repository.url must be an https URL, got {repository_url!r}")
    requirement = f"{package} @ git+{repository_url.rstrip('/')}@{branch}"
    if path_to_book.strip("/"):
        requirement += f"#subdirectory={path_to_book.strip('/')}"
    return requirement


def colab_cell_source(requirements):
    """The first cell of a published notebook: pip-installs `requirements` in Colab only."""
    quoted = " ".join(f'"{requirement}"' for requirement in requirements)
    return (
        "import sys\n"
        "\n"
        "# Colab only: install the book's package and the packages its chapters import.\n"
        'if "google.colab" in sys.modules:\n'
        f"    %pip install -q {quoted}"
    )


def published_notebook(source, colab_source):
    """The notebook of a MyST Markdown chapter, with the Colab cell first and no outputs."""
    notebook = jupytext.read(source)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["language_info"] = {"name": "python"}
    colab = nbformat.v4.new_code_cell(colab_source, id=COLAB_CELL_ID)
    notebook.cells.insert(0, colab)
    # Ids that depend only on the source keep rebuilt notebooks identical.
    for index, cell in enumerate(notebook.cells[1:], start=1):
        cell.id = f"cell-{index}"
    nbformat.validate(notebook)
    return notebook


def _is_notebook(app, docname):
    # The theme's test for a page with launch buttons: MyST-NB records the kernelspec.
    return "kernelspec" in app.env.metadata.get(docname, {})


def _colab_requirements(app):
    options = app.config.html_theme_options
    root = Path(app.srcdir)
    package = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
    install = package_requirement(
        package,
        options.get("repository_url", ""),
        options.get("repository_branch") or "main",
        options.get("path_to_docs", ""),
    )
    return [install, *pinned_requirements(root / "binder" / "requirements.txt", COLAB_EXTRAS)]


def publish_notebooks(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    colab_source = colab_cell_source(_colab_requirements(app))
    for docname in sorted(app.env.found_docs):
        if _is_notebook(app, docname):
            target = Path(app.outdir, f"{docname}.ipynb")
            target.parent.mkdir(parents=True, exist_ok=True)
            notebook = published_notebook(Path(app.env.doc2path(docname)), colab_source)
            nbformat.write(notebook, target)


def colab_url(colab, context, pagename):
    """Colab's URL for the page's published notebook on the site's branch."""
    user, repo = context.get("github_user"), context.get("github_repo")
    return f"{colab.rstrip('/')}/github/{user}/{repo}/blob/{PAGES_BRANCH}/{pagename}.ipynb"


def _group(context, label):
    for button in context.get("header_buttons", []):
        if button.get("label") == label:
            return button["buttons"]
    return None


def link_published_notebook(app, pagename, templatename, context, doctree):
    """Point the download and Colab buttons of a notebook page at its published notebook."""
    if not _is_notebook(app, pagename):
        return
    download = _group(context, "download-buttons")
    if download is not None:
        entry = {
            "type": "link",
            "url": context["pathto"](f"{pagename}.ipynb", 1),
            "text": ".ipynb",
            "icon": "fas fa-code",
            "tooltip": "Download notebook file",
            "label": "download-notebook-button",
        }
        kept = [b for b in download if b.get("label") != "download-notebook-button"]
        download[:] = [entry, *kept]
    colab = app.config.html_theme_options.get("launch_buttons", {}).get("colab_url")
    for button in _group(context, "launch-buttons") or []:
        if colab and button.get("text") == "Colab":
            button["url"] = colab_url(colab, context, pagename)


def setup(app):
    app.connect("build-finished", publish_notebooks)
    # After sphinx-book-theme has made its header buttons (priority 501).
    app.connect("html-page-context", link_published_notebook, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
