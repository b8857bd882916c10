"""The vendor API's semantics: the normal answer to a balance read, a profile update or a job.

:func:`answer` turns one vendor request (its :class:`~preflight.sandbox.dialects.Route`, the
path's parameters, the value of the dialect's auth header and the body) into a
:class:`~preflight.sandbox.protocol.Reply` against a
:class:`~preflight.sandbox.state.SandboxState`. It is the fault-free answer: the server counts
the request and applies any queued fault before it asks for this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from preflight.sandbox.dialects import READ, UPDATE, Route
from preflight.sandbox.protocol import (
    BadInput,
    Reply,
    as_object,
    bad_request,
    json_reply,
    parse_json,
)
from preflight.sandbox.state import SandboxState

_MAX_WEBHOOK_URL: Final = 2048


def answer(
    state: SandboxState,
    route: Route,
    params: Mapping[str, str],
    authorization: str | None,
    body: bytes,
) -> Reply:
    """The normal (fault-free) answer to one request on one of the dialect's routes."""
    if not state.authorized(authorization):
        return state.dialect.unauthorized(authorization)
    if route.kind == READ:
        return state.read(route, params)
    try:
        payload = as_object(parse_json(body), "the body")
    except (ValueError, BadInput) as exc:
        return bad_request(str(exc))
    if route.kind == UPDATE:
        return _update_profile(state, payload)
    return state.job(payload)


def _webhook_error(value: object) -> str | None:
    """Why ``value`` is not an acceptable webhookUrl, or None if it is."""
    bad_url = "webhookUrl must be an https URL"
    if not isinstance(value, str) or not value.startswith("https://"):
        return bad_url
    if len(value) > _MAX_WEBHOOK_URL:
        return f"webhookUrl must be at most {_MAX_WEBHOOK_URL} characters"
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        return bad_url
    try:
        host = urlsplit(value).hostname
    except ValueError:
        return bad_url
    return None if host else bad_url


def _update_profile(state: SandboxState, payload: Mapping[str, object]) -> Reply:
    # Only webhookUrl is server-controlled and writable; other fields are ignored.
    url: str | None = None
    if "webhookUrl" in payload:
        problem = _webhook_error(payload["webhookUrl"])
        if problem is not None:
            return json_reply(
                422, {"error": "validation_error", "field": "webhookUrl", "message": problem}
            )
        given = payload["webhookUrl"]
        assert isinstance(given, str)
        url = given
    return json_reply(200, state.update_profile(url))
