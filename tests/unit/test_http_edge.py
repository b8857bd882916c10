"""The HTTP edge's tables: statuses, problem types read back by the remote client, schemas."""

from __future__ import annotations

import pytest

from preflight import contract
from preflight.domain import errors
from preflight.domain.verdict import Verdict
from preflight.domain.vocabulary import FINDING_KINDS, BatchStatus, Tag
from preflight.errors import PreflightError

pytest.importorskip("fastapi")

from preflight.http import bodies, problems
from preflight.remote import ERROR_OF_TYPE


def _leaves() -> list[type[PreflightError]]:
    return [getattr(errors, name) for name in errors.__all__ if name != "PreflightError"]


def test_every_error_class_has_a_status_and_bad_input_is_never_a_5xx() -> None:
    for cls in _leaves():
        kind = problems.kind_of(cls.__new__(cls))
        assert kind is not problems.INTERNAL, cls
        if issubclass(cls, errors.UsageError) and cls is not errors.ConfigError:
            assert 400 <= kind.status < 500, cls
    assert problems.kind_of(errors.NotFoundError("x")).status == 404
    assert problems.kind_of(errors.ConflictError("x")).status == 409
    assert problems.kind_of(errors.StorageError("x")).status == 503
    assert problems.kind_of(errors.VendorUnavailableError("x")).status == 503


def test_the_remote_client_reads_each_problem_type_back_as_its_error() -> None:
    for cls, kind in problems.BY_ERROR:
        back = ERROR_OF_TYPE[kind.type]
        assert issubclass(cls, back) or cls is errors.NoGoError, (cls, back)
    assert set(ERROR_OF_TYPE) >= {kind.type for kind in problems.ALL_KINDS} - {
        problems.INTERNAL.type,
        problems.UNAUTHORIZED.type,
        problems.FORBIDDEN.type,
    }


def test_problem_details_scrub_bearer_credentials() -> None:
    body = problems.problem(problems.UNAUTHORIZED, "got Bearer abcdef123456")
    assert "abcdef123456" not in body["detail"]
    assert body["type"] == "/problems/unauthorized"


@pytest.mark.parametrize(
    ("shape", "key", "values"),
    [
        (contract.CHECK, "verdict", [v.value for v in Verdict]),
        (contract.BATCH, "status", [s.value for s in BatchStatus]),
        (contract.FAILURE, "tag", [t.value for t in Tag]),
        (contract.FINDING, "kind", list(FINDING_KINDS)),
    ],
)
def test_the_answers_words_are_the_vocabulary(
    shape: contract.Shape[object], key: str, values: list[str]
) -> None:
    schema = contract.json_schema(shape)["properties"][key]
    enum = schema.get("enum") or next(s["enum"] for s in schema["anyOf"] if "enum" in s)
    assert enum == values


def test_lines_are_split_across_chunks_and_a_long_line_is_cut() -> None:
    chunks = iter([b'{"a":', b' 1}\n{"b"', b": 2}\n\n", b"last"])
    assert list(bodies.split_lines(lambda: next(chunks, None), 100)) == [
        b'{"a": 1}\n',
        b'{"b": 2}\n',
        b"\n",
        b"last",
    ]
    long = iter([b"x" * 60, b"x" * 60, b"never read\n"])
    assert list(bodies.split_lines(lambda: next(long, None), 100)) == [b"x" * 101]


def test_exact_json_keeps_decimals_and_refuses_nan() -> None:
    data = bodies.load_exact_json(b'[{"cost": 0.1}]')
    assert list(bodies.as_lines(data)) == ['{"cost": "0.1"}']  # type: ignore[arg-type]
    with pytest.raises(errors.UsageError, match="NaN"):
        bodies.load_exact_json(b'{"cost": NaN}')


def test_the_edge_finds_each_route_itself_before_the_app_dispatches() -> None:
    # The routers' routes are the app's own (not behind include_router's matcher), so the
    # edge names a refused request's route and sees which route streams its body.
    from preflight.http.app import create_app
    from preflight.http.edge import _endpoint
    from preflight.services.runtime import Runtime
    from preflight.settings import load_settings

    app = create_app(Runtime(load_settings({"PREFLIGHT_DATABASE_URL": "sqlite://"})))
    for path, name in (
        ("/v1/batches/b/check", "check_batch"),
        ("/v1/batches/b/outcomes", "record_outcomes"),
    ):
        scope = {"type": "http", "path": path, "method": "POST", "app": app, "headers": []}
        assert _endpoint(scope).__name__ == name
    assert getattr(_endpoint({**scope}), "__preflight_streams_body__", False)
