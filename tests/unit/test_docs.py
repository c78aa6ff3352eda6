"""The README's generated tables match the code (settings, hyperparameters, metric regexes)."""

from __future__ import annotations

from scripts import docs


def test_readme_tables_are_current() -> None:
    text = docs.README.read_text()
    for name in docs.sections():
        assert f"<!-- BEGIN {name} -->" in text, f"README lacks the {name} table"
    assert docs.render(text) == text, "README tables are stale: run `python -m scripts.docs`"
    for name, body in docs.sections().items():
        assert body.strip() and body in text, f"README's {name} table is missing its rows"
    assert "`SAGEMAKER_MAX_PAYLOAD_IN_MB`" in text and "`num_round`" in text and "`negatives`" in text
