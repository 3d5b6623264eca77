"""The web page the Serve app answers at `/`: one static HTML file (inline CSS and
JavaScript, no build step, nothing fetched from a CDN), shipped as package data
(`sidrec/serving/static/index.html`, pyproject's package-data).

It talks to the same app through relative URLs, so it works under any
route_prefix, and keeps the bearer token typed into it in a JavaScript variable
only (never in storage, a cookie or the URL).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["page_html"]


@cache
def page_html() -> str:
    return resources.files("sidrec.serving").joinpath("static/index.html").read_text("utf-8")
