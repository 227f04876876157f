"""Write each inline ``<script>`` into a page once.

Sphinx 7.4 keeps an inline script (``app.add_js_file(None, body=...)``) that an extension adds
after the HTML builder started under the file name ``None``, then adds it again from its
registry under the name ``''`` when it prepares writing, so the page gets it twice. For
sphinx-thebe's ``const THEBE_JS_URL = ...`` that is a SyntaxError on every page. Renaming the
early copies to ``''`` lets Sphinx see the second one as the duplicate it is.
"""

from sphinx.builders.html import StandaloneHTMLBuilder
from sphinx.builders.html._assets import _JavaScript


def _name_inline_scripts_as_the_registry_does(app, env):
    builder = app.builder
    if not isinstance(builder, StandaloneHTMLBuilder):
        return
    scripts = [
        _JavaScript(script.filename or "", priority=script.priority, **script.attributes)
        for script in builder._js_files
    ]
    builder._js_files[:] = list(dict.fromkeys(scripts))


def setup(app):
    # env-updated comes after every extension's env-before-read-docs (where sphinx-thebe adds
    # its script) and before the builder re-adds the registry's scripts in prepare_writing.
    app.connect("env-updated", _name_inline_scripts_as_the_registry_does)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
