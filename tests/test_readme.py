"""The README documents what the code does: its option table is the config model's."""

from pathlib import Path

from dope_stream.config import GenerateConfig, options_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_lists_every_generate_option_with_its_default():
    assert options_markdown(GenerateConfig) in README.read_text()


def test_readme_set_up_commands_are_the_ci_command():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash install.sh && python3 -m pytest -q" in ci
    assert "bash install.sh && python3 -m pytest -q" in README.read_text()
    assert "bash install.sh && dope demo" in README.read_text()
