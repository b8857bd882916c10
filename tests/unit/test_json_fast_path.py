"""The JSON Lines fast path answers exactly what ``JSONDecoder.decode`` answers: the same
value, or the same error with the same message."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from preflight.domain import outcome

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
PIECES = st.sampled_from(
    ["", " ", "\n", "\r\n", "\t", "x", "}", "{", "[", "]", ",", '"', "1e5", "NaN", "-", "1" * 120]
)


def _answer(decode: object, text: str) -> tuple[str, object]:
    try:
        return "value", decode(text)  # type: ignore[operator]
    except Exception as exc:  # the comparison is the point
        return type(exc).__name__, str(exc)


@given(VALUES, PIECES, PIECES)
def test_json_text_with_noise_around_it(value: object, before: str, after: str) -> None:
    text = before + json.dumps(value) + after
    assert _answer(outcome._decode, text) == _answer(outcome._DECODER.decode, text)


@given(st.text(max_size=40))
def test_any_text(text: str) -> None:
    assert _answer(outcome._decode, text) == _answer(outcome._DECODER.decode, text)
