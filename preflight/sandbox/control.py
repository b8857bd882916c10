"""The control API (``/_sandbox/<name>``): what each endpoint does and answers.

No auth, JSON bodies, decimals as strings. :func:`answer` is the HTTP side of one control
request (unknown endpoint 404, wrong method 405, bad JSON or refused input 400); :func:`run` is
its meaning, on the same :class:`~preflight.sandbox.state.SandboxState` methods that
:class:`~preflight.sandbox.SandboxServer`'s in-process helpers call.
"""

from __future__ import annotations

from typing import Final

from preflight.sandbox.protocol import (
    ZERO,
    BadInput,
    Reply,
    as_object,
    bad_request,
    json_reply,
    parse_json,
    plain,
    plain_meters,
    reject_unknown_keys,
)
from preflight.sandbox.state import SandboxState

PREFIX: Final = "/_sandbox/"

# Control endpoint name -> the one method it answers.
ROUTES: Final = {
    "state": "GET",
    "faults": "POST",
    "shape": "POST",
    "consume": "POST",
    "balance": "POST",
    "topup": "POST",
    "reset": "POST",
    "reset_period": "POST",
}


def answer(state: SandboxState, method: str, name: str, body: bytes) -> Reply:
    """The answer to ``method /_sandbox/<name>`` with ``body`` (empty: ``{}``)."""
    allowed = ROUTES.get(name)
    if allowed is None:
        return json_reply(404, {"error": "not_found", "message": f"no control endpoint {name}"})
    if name == "reset_period" and not state.dialect.has_period:
        message = f"the {state.dialect.name} vendor has no billing period to reset"
        return json_reply(404, {"error": "not_found", "message": message})
    if method != allowed:
        return json_reply(405, {"error": "method_not_allowed"}, headers=(("Allow", allowed),))
    try:
        payload = parse_json(body) if body.strip() else {}
    except ValueError as exc:
        return bad_request(f"invalid JSON: {exc}")
    try:
        return json_reply(200, run(state, name, payload))
    except BadInput as exc:
        return bad_request(str(exc))


def run(state: SandboxState, name: str, payload: object) -> dict[str, object]:
    """Run the control endpoint ``name`` (one of :data:`ROUTES`); BadInput means a 400."""
    if name == "state":
        return state.snapshot()
    if name == "faults":
        return {"faults_queued": state.inject(payload)}
    if name == "shape":
        state.set_shape(as_object(payload, "shape"))
        return {"shape": state.shape()}
    if name == "reset":
        state.reset()
        return {"ok": True}
    if name == "reset_period":
        state.reset_period()
        return state.snapshot()
    spec = as_object(payload, f"the {name} request")
    if name == "balance":
        if not spec:
            raise BadInput(f"give one or more of {', '.join(state.dialect.meter_names)}")
        state.set_meters(spec)
        return {"balance": plain_meters(state.balance())}
    reject_unknown_keys(spec, frozenset({"amount", "meter"}), name)
    if name == "topup":
        meter = state.topup(spec.get("amount"), spec.get("meter"))
        return {"meter": meter, "balance": plain_meters(state.balance())}
    consumed = state.consume(spec.get("amount"), spec.get("meter"))
    return {
        # One meter: what it lost. "both"/"all": the larger loss, i.e. ``amount`` unless
        # every meter was clamped; by_meter has the detail.
        "consumed": plain(max(consumed.values(), default=ZERO)),
        "by_meter": {meter: plain(spent) for meter, spent in consumed.items()},
        "balance": plain_meters(state.balance()),
    }
