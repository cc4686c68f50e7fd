"""MkDocs hook: tables written from the code, so that the docs cannot drift from it.

A page holds a marker `<!-- generated: NAME -->` where the table goes.
"""

from __future__ import annotations

from typing import Any

from trainer.diagnosis import table

GENERATED = {"rule table": table.markdown}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for name, write in GENERATED.items():
        markdown = markdown.replace(f"<!-- generated: {name} -->", write())
    return markdown
