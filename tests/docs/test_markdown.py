"""The doc tests' own rules, on small Markdown documents written here; the blocks of
README.md and docs/*.md are collected after these tests (see conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sybil.example import SybilFailure

from tests.docs.blocks import output_matches, parse_console, parse_script
from tests.docs.conftest import DOCS


def run_document(tmp_path: Path, text: str) -> None:
    """Evaluate every block of a Markdown document, as the doc tests do."""
    path = tmp_path / "guide.md"
    path.write_text(text)
    document = DOCS.parse(path)
    for example in document.examples():
        example.evaluate()


def test_a_command_that_fails_fails_its_block_naming_file_and_line(tmp_path: Path) -> None:
    text = "# Guide\n\nRun it:\n\n```sh\ntrue\nls no-such-file\n```\n"
    with pytest.raises(SybilFailure) as failure:
        run_document(tmp_path, text)
    assert f"{tmp_path / 'guide.md'}:7: exit code, expected 0" in str(failure.value)
    assert "$ ls no-such-file" in str(failure.value)


def test_a_block_marked_skip_is_not_run(tmp_path: Path) -> None:
    run_document(tmp_path, "Needs docker:\n\n<!-- skip: next -->\n```sh\nfalse\n```\n")


@pytest.mark.parametrize(
    "command", ["pip install requests", "docker compose up -d", "sudo true", "apt-get install curl"]
)
def test_a_command_that_changes_the_machine_is_never_run(tmp_path: Path, command: str) -> None:
    with pytest.raises(SybilFailure, match="installs or needs Docker"):
        run_document(tmp_path, f"```sh\n{command}\n```\n")


def test_a_skip_before_a_block_that_is_not_run_skips_that_block_only(tmp_path: Path) -> None:
    text = '<!-- skip: next -->\n```json\n{"a": 1}\n```\n\n```sh\nfalse\n```\n'
    with pytest.raises(SybilFailure, match="exit code, expected 0"):
        run_document(tmp_path, text)


def test_the_exit_code_a_comment_names_is_the_expected_one(tmp_path: Path) -> None:
    run_document(tmp_path, "```sh\nsh -c 'exit 10'   # insufficient, exit 10\n```\n")
    with pytest.raises(SybilFailure, match="exit code, expected 10"):
        run_document(tmp_path, "```sh\ntrue   # exit 10\n```\n")


def test_shown_output_is_compared(tmp_path: Path) -> None:
    run_document(tmp_path, '```sh\necho \'{"a": 1, "b": 2}\'\n# {"a": 1, ...}\n```\n')
    with pytest.raises(SybilFailure, match="output, expected"):
        run_document(tmp_path, '```sh\necho \'{"a": 2}\'   # {"a": 1}\n```\n')


def test_a_server_runs_in_the_background_on_a_free_port(tmp_path: Path) -> None:
    text = (
        "```sh\n"
        "preflight simulate --port 8765 --credits 7\n"
        'curl -s localhost:8765/_sandbox/state | grep -q \'"credits": "7"\'\n'
        "```\n"
    )
    run_document(tmp_path, text)


def test_a_server_that_exits_fails_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(SybilFailure, match=r"the server exited(.|\n)*nope"):
        run_document(tmp_path, "```sh\npreflight simulate --port 8765 --vendor nope\n```\n")


def test_variables_functions_and_the_directory_carry_over(tmp_path: Path) -> None:
    text = (
        "```bash\n"
        "mkdir -p sub && cd sub\n"
        "COUNT=3\n"
        "twice() { echo $(( $1 * 2 )); }\n"
        'test "$(basename "$PWD")" = sub && test "$(twice $COUNT)" = 6\n'
        "```\n"
    )
    run_document(tmp_path, text)


def test_a_console_session_shows_its_output(tmp_path: Path) -> None:
    text = (
        "```console\n"
        """$ echo '{"a": 1, "b": 2}'\n"""
        """{"a": 1, ...}\n"""
        "$ sh -c 'exit 3'  # exit 3\n"
        "```\n"
    )
    run_document(tmp_path, text)
    with pytest.raises(SybilFailure, match="output, expected"):
        run_document(tmp_path, "```console\n$ echo 2\n1\n```\n")


def test_an_invisible_block_sets_the_next_session_up(tmp_path: Path) -> None:
    text = '<!-- invisible-code-block: sh\nexport BATCH=b7\n-->\n```sh\ntest "$BATCH" = b7\n```\n'
    run_document(tmp_path, text)


def test_a_block_of_a_language_nothing_runs_fails(tmp_path: Path) -> None:
    with pytest.raises(SybilFailure, match="a ```ruby block, which no doc test runs"):
        run_document(tmp_path, "```ruby\nputs 1\n```\n")


def test_a_block_without_a_language_fails(tmp_path: Path) -> None:
    with pytest.raises(SybilFailure, match="a fenced block without a language"):
        run_document(tmp_path, "```\npreflight nope\n```\n")
    run_document(tmp_path, "```text\npreflight/   the package\n```\n")


def test_a_toml_block_must_be_a_settings_file(tmp_path: Path) -> None:
    run_document(tmp_path, '```toml\n[accounts.b]\ntoken_env = "B_TOKEN"\n```\n')
    with pytest.raises(SybilFailure, match="not a settings file"):
        run_document(tmp_path, '```toml\n[accounts.b]\ntoken = "inline"\n```\n')


def test_python_blocks_share_a_namespace_with_invisible_set_up(tmp_path: Path) -> None:
    text = (
        "<!-- invisible-code-block: python\nneed = 60\n-->\n"
        "```python\ntotal = need + 1\n```\n"
        "```python\nassert total == 61\n```\n"
    )
    run_document(tmp_path, text)


def test_a_python_block_that_raises_fails(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        run_document(tmp_path, "```python\n1 / 0\n```\n")


@pytest.mark.parametrize(
    ("shown", "actual", "matches"),
    [
        ('{"status":"ok"}', '{"status":"ok"}\n', True),
        ('{"a":1,...}', '{"a":1,"b":"2026-12-07T01:00:00Z"}', True),
        ('{"a":1,...}', '{"a":2,"b":3}', False),
        ("[...]", "[]", True),
        ("x", "xy", False),
    ],
)
def test_output_matching(shown: str, actual: str, matches: bool) -> None:
    assert output_matches(shown, actual) is matches


def test_script_parsing() -> None:
    source = (
        "# terminal 1\n"
        "preflight serve --port 80 &   # the API\n"
        "curl -s x \\\n"
        "  -d '{\"#\": 1}'   # exit 7\n"
        '# {"a": 1}\n'
        "\n"
        '# {"not": "output"}\n'
    )
    serve, curl = parse_script(source, "doc.md", 10)
    assert (serve.line, serve.text, serve.background) == (11, "preflight serve --port 80", True)
    assert (curl.line, curl.exit_code, curl.stdout) == (12, 7, '{"a": 1}')
    assert curl.text == "curl -s x \\\n  -d '{\"#\": 1}'"


def test_console_parsing() -> None:
    source = "$ preflight check b --need 1 \\\n>   --format json\n{...}\n$ true   # exit 0\n"
    check, true = parse_console(source, "doc.md", 1)
    assert (check.line, check.stdout) == (1, "{...}")
    assert check.text == "preflight check b --need 1 \\\n   --format json"
    assert (true.line, true.stdout) == (4, None)
