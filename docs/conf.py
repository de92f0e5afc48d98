"""Sphinx configuration: the site is built with ``python -m sphinx -W -b html docs docs/_build/html``.

Sphinx with numpydoc because the docstrings are numpydoc (as numpy's, scipy's
and pydata/sparse's are) and myst-nb because the pages are Markdown and the
tutorials are executed notebooks, rendered as they are (never re-run here).
Pages that come from the code (one per family, the benchmark tables, the
tutorials' copies) are written into ``generated/`` by ``_ext/sparseconv_pages.py``
before the build reads its sources.
"""

import pathlib
import sys

import sparseconv

sys.path.insert(0, str(pathlib.Path(__file__).parent / "_ext"))

project = "sparseconv"
author = "the sparseconv developers"
copyright = "2026, the sparseconv developers"
release = version = sparseconv.__version__

extensions = [
    "myst_nb",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sparseconv_pages",
]

exclude_patterns = ["_build", "README.md"]
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"sparseconv {version}"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}
html_static_path = []
