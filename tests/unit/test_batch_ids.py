"""The batch-id grammar is one pattern: the HTTP schema says exactly what the domain says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from preflight.domain.batch import BATCH_ID_MAX_LENGTH, BATCH_ID_PATTERN, validate_batch_id
from preflight.domain.errors import UsageError
from preflight.http.routes.common import BatchId
from preflight.http.schemas import ClassifyIn

# Pydantic checks a pattern with its own (Rust) regular-expression engine, not Python's.
_PATH = TypeAdapter(BatchId)

#: The grammar's characters, their neighbours in ASCII and a few beyond it.
_NEAR = st.text(
    alphabet=st.sampled_from(list("aZ09._:+=@/-") + list(" #%&?\\;,~*!$'()[]{}|^`\"<>é\x00\n")),
    min_size=0,
    max_size=12,
)


def _domain_accepts(batch_id: str) -> bool:
    try:
        validate_batch_id(batch_id)
    except UsageError:
        return False
    return True


def _http_accepts(batch_id: str) -> bool:
    try:
        _PATH.validate_python(batch_id)
    except ValidationError:
        return False
    return True


@given(_NEAR | st.from_regex(BATCH_ID_PATTERN, fullmatch=True))
def test_the_http_path_accepts_exactly_what_the_domain_accepts(batch_id: str) -> None:
    assert _http_accepts(batch_id) == _domain_accepts(batch_id)


@pytest.mark.parametrize(
    ("length", "accepted"),
    [(1, True), (BATCH_ID_MAX_LENGTH, True), (BATCH_ID_MAX_LENGTH + 1, False)],
)
def test_the_length_bound_is_the_same_on_both_sides(length: int, accepted: bool) -> None:
    batch_id = "+" * length
    assert _domain_accepts(batch_id) is accepted
    assert _http_accepts(batch_id) is accepted
    body = {"batch_id": batch_id}
    if accepted:
        assert ClassifyIn.model_validate(body).batch_id == batch_id
    else:
        with pytest.raises(ValidationError):
            ClassifyIn.model_validate(body)


def test_an_airflow_run_id_is_a_batch_id() -> None:
    batch_id = "my_dag/manual__2026-12-07T00:35:27.935842+00:00"
    assert _domain_accepts(batch_id)
    assert _http_accepts(batch_id)
