"""The README documents every command and every setting exactly as the code defines them."""

from streamrec.cli.readme import README, render
from streamrec.config import Settings


def test_readme_generated_blocks_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "README is stale: run `make docs`"


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []
