"""Sphinx configuration for the jupyter_comm_ext documentation."""

import sys
from pathlib import Path

import jupyter_comm_ext

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

project = "jupyter_comm_ext"
author = "jupyter_comm_ext contributors"
copyright = "2026, jupyter_comm_ext contributors"
version = release = jupyter_comm_ext.__version__

extensions = ["myst_parser", "comm_reference"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = "jupyter_comm_ext"
html_static_path = ["_static"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": [],
    "secondary_sidebar_items": ["page-toc"],
}
# pages without sub-pages need no section navigation
html_sidebars = {page: [] for page in ("index", "hub", "security", "how-it-works")}
html_show_sourcelink = False
