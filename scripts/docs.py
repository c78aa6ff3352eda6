"""Regenerate the README's tables from the code that owns them (settings, metric regexes, and each
family's hyperparameters, as its declaration names them), so the docs match the code.
`python -m scripts.docs` rewrites README.md; tests/unit/test_docs.py fails when they drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from container.settings import markdown_table
from training import families, metrics

README = Path(__file__).resolve().parent.parent / "README.md"


def metric_table() -> str:
    rows = ["| metric | regex |", "|---|---|"]
    for d in metrics.metric_definitions(metrics.published()):
        regex = d["Regex"].replace("|", "\\|")  # GitHub tables split on '|' even in code
        rows.append(f"| `{d['Name']}` | `{regex}` |")
    return "\n".join(rows)


def sections() -> dict[str, str]:
    found = {"env": markdown_table(), "metrics": metric_table()}
    for family in families.all_families().values():
        found.update(family.doc_tables())
    return found


def render(text: str) -> str:
    for name, body in sections().items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    sys.stdout.write("README.md tables regenerated\n")
