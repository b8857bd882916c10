from __future__ import annotations

import io

from preflight.cli.support import bounded_lines


def test_bounded_lines_cuts_a_long_line_and_stops() -> None:
    stream = io.BytesIO(b"short\n" + b"y" * 50 + b"\nnever read\n")
    assert list(bounded_lines(stream, 10)) == [b"short\n", b"y" * 11]


def test_bounded_lines_keeps_a_last_line_without_newline() -> None:
    assert list(bounded_lines(io.BytesIO(b"a\nb"), 10)) == [b"a\n", b"b"]
