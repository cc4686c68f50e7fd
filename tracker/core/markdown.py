"""Markdown written by people (a report's text blocks), as HTML that is safe to put in a page:
rendered by markdown-it-py with raw HTML off, then sanitised by nh3 (an allow-list of tags,
attributes and URL schemes), so that no script, event handler, `javascript:` link or iframe
survives whatever the text holds."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_RENDERER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

TAGS = {
    *("h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "blockquote"),
    *("ul", "ol", "li", "strong", "em", "del", "s", "code", "pre", "a", "img"),
    *("table", "thead", "tbody", "tr", "th", "td"),
}
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "code": {"class"},
}


def render(text: str) -> str:
    """Sanitised HTML of a Markdown text (links open as http(s), mailto or within this site)."""
    return nh3.clean(
        _RENDERER.render(text),
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
