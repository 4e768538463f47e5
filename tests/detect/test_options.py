"""Option help says what the code does."""

from __future__ import annotations

from conftest import REPO
from decon.detect.options import OPTION_HELP
from decon.detect.reference import MIN_FUZZY_WORDS

README = REPO / "README.md"


def test_word_edit_rate_help_and_readme_give_the_codes_minimum_length() -> None:
    phrase = f"at least 1 from {MIN_FUZZY_WORDS} words"
    assert phrase in OPTION_HELP["word_edit_rate"]
    assert phrase in README.read_text()
