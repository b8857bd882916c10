"""How the code blocks of the Markdown docs run: as written, against the sandbox vendor.

Python blocks run with Sybil's own parser (tests/docs/conftest.py). ``toml`` blocks are
settings files: each must load as ``PREFLIGHT_CONFIG`` (tokens are not read). Blocks of
``json`` and ``text`` show data and are not run; a fenced block of any other language, or
of none, fails, so that no new kind of block goes unrun.

A fenced ``sh``, ``bash`` or ``shell`` block is one session, read the way a user pastes it:

- its commands run one after another in one shell state (``export``, ``cd`` and functions
  carry over to the next command), in a fresh directory, as a new user: ``HOME`` is a
  temporary directory (so the default SQLite database and the demo's start empty),
  ``preflight`` and ``.venv/bin/preflight`` are the code under test, and the vendor settings
  (``PREFLIGHT_VENDOR_URL``, ``PREFLIGHT_API_TOKEN``) point at a fresh sandbox vendor with 100
  credits, as the quick start starts it (with short retries, so that a failure fails fast).
  ``run_jobs`` stands for the user's jobs: it prints two outcomes as JSON Lines (job-1
  succeeded at cost 10, job-2 failed with a 402);
- a command must exit 0, or N when its comment says ``exit N`` (``# insufficient, exit 10``);
- a comment that starts with ``{`` or ``[``, at the end of the command or on the lines right
  after it, is the command's standard output; ``...`` in it stands for anything (ids, times);
- ``preflight simulate`` and ``preflight serve`` serve until stopped ("terminal 1"), as does
  any command that ends in ``&``: they start in the background, the next command runs once
  their ``--port`` accepts connections, and they are stopped when the session ends. Every
  port a block names with ``--port`` is replaced by a free one throughout the block, so that
  parallel runs never collide.

A ``console`` block is the same with ``$ `` before each command, and the lines after a
command, up to the next ``$ ``, its standard output.

An ``<!-- invisible-code-block: sh -->`` comment holds commands that run at the start of the
next shell block's session (placeholders a real orchestrator would fill, say).

A block that cannot run here (a real vendor account, an install, docker) is marked with
``<!-- skip: next -->`` on the line before it, and the text near it says why. A command
that installs, or uses Docker or sudo, is never run: its unmarked block fails.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

from sybil import Document, Example, Region
from sybil.parsers.abstract.lexers import LexerCollection
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer

from preflight.errors import ConfigError
from preflight.sandbox import DEFAULT_TOKEN, SandboxServer
from preflight.settings import load_settings

#: The repository: paths in failure messages are relative to it.
ROOT = Path(__file__).resolve().parents[2]

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "console"})
#: Languages whose blocks show data rather than something to run.
NOT_RUN = frozenset({"json", "text"})

#: Commands that serve until stopped, whatever their line ends with.
SERVERS = re.compile(r"(?:^|[\s/])preflight\s+(?:simulate|serve)\b")
PORT = re.compile(r"--port[ =]([1-9][0-9]*)\b")
EXIT_CODE = re.compile(r"\bexit (\d+)\b")
#: Commands that change the machine rather than a session: never run, the block must be
#: marked to skip.
NEVER_RUN = re.compile(r"\b(?:pip3?|uv pip|apt-get|apt|brew) install\b|\bdocker\b|\bsudo\b")
OUTPUT_START = ("{", "[")

#: Seconds one command may take, and a server to accept connections, before the block fails.
COMMAND_TIMEOUT = 60
SERVER_START_TIMEOUT = 30

#: The stand-in for the user's jobs (see the module docstring).
RUN_JOBS = """run_jobs() {
  printf '%s\\n' '{"job_id": "job-1", "status": "succeeded", "cost": "10"}' \\
    '{"job_id": "job-2", "status": "failed", "http_status": 402}'
}
"""

#: Saves the shell's state when a command's shell exits, however it exits.
SAVE_STATE = (
    'trap \'{ export -p; declare -f; printf "cd %q\\n" "$PWD"; } > "$DOCS_SESSION_STATE"\' EXIT'
)


@dataclass(frozen=True)
class Command:
    """One command of a session, where the document has it and what it says it does."""

    path: str
    line: int
    text: str
    exit_code: int = 0
    stdout: str | None = None
    background: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def split_comment(line: str) -> tuple[str, str]:
    """The code and the comment of one shell line: a ``#`` that starts a word, unquoted."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line.rstrip(), ""


def _command(path: str, line: int, text: str, comment: str) -> Command:
    background = SERVERS.search(text) is not None
    if text.endswith("&") and not text.endswith("&&"):
        text, background = text[:-1].rstrip(), True
    code = EXIT_CODE.search(comment)
    return Command(
        path=path,
        line=line,
        text=text,
        exit_code=int(code[1]) if code else 0,
        stdout=comment if comment.startswith(OUTPUT_START) else None,
        background=background,
    )


def parse_script(source: str, path: str, first_line: int) -> list[Command]:
    """The commands of an ``sh``/``bash`` block whose first line is line ``first_line``."""
    commands: list[Command] = []
    lines = source.splitlines()
    after_command = False  # an output comment must follow its command directly
    index = 0
    while index < len(lines):
        start = index
        code, comment = split_comment(lines[index])
        parts = [code]
        while code.endswith("\\") and index + 1 < len(lines):
            index += 1
            code, comment = split_comment(lines[index])
            parts.append(code)
        index += 1
        text = "\n".join(parts).strip()
        if text:
            commands.append(_command(path, first_line + start, text, comment))
            after_command = True
        elif after_command and comment.startswith(OUTPUT_START):
            shown = commands[-1].stdout
            commands[-1] = replace(
                commands[-1], stdout=comment if shown is None else f"{shown}\n{comment}"
            )
        else:
            after_command = False
    return commands


def parse_console(source: str, path: str, first_line: int) -> list[Command]:
    """The commands of a ``console`` block: ``$ command``, then the output it shows."""
    commands: list[Command] = []
    output: list[str] = []

    def close_output() -> None:
        if commands and output:
            commands[-1] = replace(commands[-1], stdout="\n".join(output).rstrip("\n"))
        output.clear()

    lines = source.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$"):
            output.append(line)
            index += 1
            continue
        close_output()
        start = index
        code, comment = split_comment(line[1:])
        parts = [code]
        while code.endswith("\\") and index + 1 < len(lines):
            index += 1
            code, comment = split_comment(lines[index].removeprefix(">"))
            parts.append(code)
        index += 1
        text = "\n".join(parts).strip()
        if text:
            commands.append(_command(path, first_line + start, text, comment))
    close_output()
    return commands


def output_matches(shown: str, actual: str) -> bool:
    """Whether ``actual`` is what the doc shows, ``...`` (or ``…``) standing for anything."""
    pattern = ".*?".join(re.escape(part) for part in re.split(r"\.\.\.|…", shown.strip()))
    return re.fullmatch(pattern, actual.strip(), re.DOTALL) is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def with_free_ports(commands: list[Command]) -> list[Command]:
    """``commands`` with every port they name with ``--port N`` replaced by a free one."""
    ports = dict.fromkeys(port for c in commands for port in PORT.findall(c.text))
    for port in ports:
        free = str(free_port())
        commands = [
            replace(c, text=re.sub(rf"(?<![0-9]){port}(?![0-9])", free, c.text)) for c in commands
        ]
    return commands


def _report(command: Command, problem: str, completed: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{command.where}: {problem}\n"
        f"  $ {command.text}\n"
        f"  exit code: {completed.returncode}\n"
        f"  stdout: {completed.stdout.strip()[-2000:]!r}\n"
        f"  stderr: {completed.stderr.strip()[-2000:]!r}"
    )


class Session:
    """A fresh user's shell for one block: its directory, state, servers and sandbox vendor."""

    def __init__(self, root: Path, vendor_url: str) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        (root / "home").mkdir()
        self.bin = self._commands(root / "bin")
        # `.venv/bin/preflight` of the docs is the code under test, like plain `preflight`.
        (self.work / ".venv").mkdir()
        (self.work / ".venv" / "bin").symlink_to(self.bin)
        self.state = root / "state.sh"
        self.state.write_text(f"cd {shlex.quote(str(self.work))}\n{RUN_JOBS}")
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PREFLIGHT_", "XDG_")) and name != "VIRTUAL_ENV"
        }
        self.env = {
            **inherited,
            "HOME": str(root / "home"),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "DOCS_SESSION_STATE": str(self.state),
            "PREFLIGHT_VENDOR_URL": vendor_url,
            "PREFLIGHT_API_TOKEN": DEFAULT_TOKEN,
            # A failing command fails fast: few, short retries.
            "PREFLIGHT_BACKOFF_BASE": "0.01",
            "PREFLIGHT_BACKOFF_MAX": "0.05",
            "PREFLIGHT_DEADLINE": "5",
        }
        self.servers: list[tuple[Command, subprocess.Popen[bytes], Path]] = []

    @staticmethod
    def _commands(bin_dir: Path) -> Path:
        """``preflight`` and ``python`` of the interpreter running the tests."""
        bin_dir.mkdir()
        preflight = bin_dir / "preflight"
        preflight.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m preflight "$@"\n')
        preflight.chmod(0o755)
        (bin_dir / "python").symlink_to(sys.executable)
        return bin_dir

    def _script(self, command: Command, *, save: bool) -> str:
        # set -a: a bare assignment (BATCH=b) carries over to the next command, as in a shell.
        return "\n".join(
            ["set -a", '. "$DOCS_SESSION_STATE"', SAVE_STATE if save else "", command.text]
        )

    def run(self, command: Command) -> str | None:
        """Run one command; a description of how it differs from the doc, or None."""
        if NEVER_RUN.search(command.text):
            return (
                f"{command.where}: installs or needs Docker, which no doc test does: mark the "
                f"block with <!-- skip: next --> and say near it why\n  $ {command.text}"
            )
        if command.background:
            return self._start(command)
        try:
            completed = subprocess.run(
                ["bash", "-c", self._script(command, save=True)],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"{command.where}: still running after {COMMAND_TIMEOUT} s\n  $ {command.text}"
        if completed.returncode != command.exit_code:
            return _report(command, f"exit code, expected {command.exit_code}", completed)
        if command.stdout is not None and not output_matches(command.stdout, completed.stdout):
            return _report(command, f"output, expected {command.stdout!r}", completed)
        return None

    def _start(self, command: Command) -> str | None:
        port = PORT.search(command.text)
        if port is None:
            return (
                f"{command.where}: a command that serves needs --port N, so that the session "
                f"can wait for it\n  $ {command.text}"
            )
        log = self.root / f"server-{len(self.servers)}.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                ["bash", "-c", self._script(command, save=False)],
                cwd=self.work,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped with its children
            )
        self.servers.append((command, server, log))
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while server.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", int(port[1])), timeout=1).close()
            except OSError:
                time.sleep(0.05)  # polling for readiness, with a deadline
            else:
                return None
        problem = "exited" if server.poll() is not None else "never listened"
        return (
            f"{command.where}: the server {problem}\n  $ {command.text}\n"
            f"  output: {log.read_text(errors='replace').strip()[-2000:]!r}"
        )

    def close(self) -> None:
        for _command, server, _log in self.servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


@contextmanager
def session() -> Iterator[Session]:
    """A fresh session with its own sandbox vendor (100 credits), removed afterwards."""
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="docs-session-")))
        vendor = stack.enter_context(SandboxServer(credits=Decimal("100")))
        running = Session(root, vendor.url)
        stack.callback(running.close)
        yield running


def run_session(commands: Iterable[Command]) -> str | None:
    """Run ``commands`` in a fresh session; how the first one differs from its doc, or None."""
    with session() as running:
        for command in with_free_ports(list(commands)):
            problem = running.run(command)
            if problem is not None:
                return problem
    return None


# ------------------------------------------------------------------------- Sybil parsers

#: The lexers of Sybil's Markdown code-block parser: fenced blocks and invisible ones.
_CODE_BLOCKS = LexerCollection(
    [
        FencedCodeBlockLexer(language=r".*", mapping={"language": "arguments", "source": "source"}),
        DirectiveInHTMLCommentLexer(directive=r"(invisible-)?code(-block)?", arguments=".+"),
    ]
)
_SETUP = "docs_shell_setup"


def shown_path(path: str) -> str:
    """``path`` as a failure message names it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def _block_commands(example: Example) -> list[Command]:
    language = example.region.lexemes["arguments"].strip()
    source = str(example.parsed)
    # The source starts on the line after the fence or the directive.
    parse = parse_console if language == "console" else parse_script
    return parse(source, shown_path(example.path), example.line + 1)


def _evaluate_shell_block(example: Example) -> str | None:
    setup: list[Command] = example.namespace.pop(_SETUP, [])
    return run_session([*setup, *_block_commands(example)])


def _keep_shell_setup(example: Example) -> None:
    example.namespace.setdefault(_SETUP, []).extend(_block_commands(example))


def _load_settings_file(example: Example) -> str | None:
    with tempfile.TemporaryDirectory(prefix="docs-toml-") as directory:
        config = Path(directory) / "preflight.toml"
        config.write_text(str(example.parsed))
        try:
            load_settings({"PREFLIGHT_CONFIG": str(config)}, tokens=False)
        except ConfigError as exc:
            return f"{shown_path(example.path)}:{example.line}: not a settings file: {exc}"
    return None


def _show_only(_example: Example) -> None:
    return None


def _refuse_unknown_block(example: Example) -> str:
    language = example.region.lexemes["arguments"].strip()
    where = f"{shown_path(example.path)}:{example.line}"
    if not language:
        return f"{where}: a fenced block without a language: name it (```text if it is no code)"
    return (
        f"{where}: a ```{language} block, which no doc test runs: "
        "run it from tests/docs, or mark it with <!-- skip: next --> on the line before "
        "and say near it why it cannot run"
    )


class BlockParser:
    """Sybil parser of every fenced block but Python's (Sybil's own parser runs those): each
    shell block as one session, each ``toml`` block as a settings file, and a block of a
    language that nothing runs as a failure, so that no new block goes unrun."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in _CODE_BLOCKS(document):
            language = str(region.lexemes["arguments"]).strip()
            invisible = "directive" in region.lexemes
            if language in SHELL_LANGUAGES:
                region.evaluator = _keep_shell_setup if invisible else _evaluate_shell_block
            elif language == "toml":
                region.evaluator = _load_settings_file
            elif language in NOT_RUN:
                # Still an example, so that a skip marked before it skips it, not a later block.
                region.evaluator = _show_only
            elif language != "python" and not invisible:
                region.evaluator = _refuse_unknown_block
            else:
                continue
            region.parsed = region.lexemes["source"]
            yield region
