"""Markdown written by people (a report's text blocks), as HTML that is safe to put in a page:
rendered by markdown-it-py with raw HTML off, then sanitised by nh3 (an allow-list of tags,
attributes and URL schemes), so that no script, event handler, `javascript:` link or iframe
survives whatever the text holds."""

from __future__ import annotations

import re

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


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TAG_START = re.compile(r"<(?!(?:https?|mailto):)(?=[A-Za-z/!?])", re.IGNORECASE)
# a link or image destination: ](dest ...) or ](<dest> ...)
_DESTINATION = re.compile(r"\]\(\s*<?([^)\s>]*)")
_SAFE_SCHEMES = ("http:", "https:", "mailto:")


def _safe_destination(match: re.Match[str]) -> str:
    destination = match.group(1)
    scheme = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", destination.strip())
    if scheme and scheme.group(0).lower() not in _SAFE_SCHEMES:
        return match.group(0).replace(destination, "#removed-link", 1)
    return match.group(0)


def inert(text: str) -> str:
    """The Markdown as written, for a file that another renderer will read (a report's Markdown
    export), with what could run disarmed outside code: a raw HTML tag's `<` escaped (it shows
    as text), a link to any scheme but http(s) or mailto pointed at #removed-link."""
    out, fence = [], ""
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            out.append(line)
            continue
        if opened:
            fence = opened.group(1)
            out.append(line)
            continue
        # code spans keep their text; the rest is disarmed
        parts = re.split(r"(`+[^`]*`+)", line)
        out.append(
            "".join(
                part if part.startswith("`") else _DESTINATION.sub(_safe_destination, _TAG_START.sub(r"\\<", part))
                for part in parts
            )
        )
    return "\n".join(out)
