"""The verb table: every verb runs locally through the function it names, and remotely
through the method of the same name of both remote clients, with the same parameters."""

from __future__ import annotations

import inspect

import pytest

from preflight import verbs
from preflight.remote import AsyncRemoteClient, RemoteClient, Requests

REMOTE = [name for name, verb in verbs.VERBS.items() if verb.remote]


def _parameters(function: object, skip: int) -> list[tuple[str, object, object]]:
    params = list(inspect.signature(function).parameters.values())[skip:]  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize("name", list(verbs.VERBS))
def test_each_verb_resolves_once_to_the_function_it_names(name: str) -> None:
    function = verbs.local(name)
    assert function.__name__ == verbs.VERBS[name].function
    assert function.__module__ == verbs.VERBS[name].module
    assert verbs.local(name) is function


@pytest.mark.parametrize("name", REMOTE)
def test_a_remote_verb_takes_the_services_parameters_in_both_clients(name: str) -> None:
    service = _parameters(verbs.local(name), skip=1)  # without the runtime
    core = getattr(Requests, name)
    if name != "update_profile":  # refused remotely, whatever its options
        assert _parameters(core, skip=1) == service
    for client in (RemoteClient, AsyncRemoteClient):
        if name == "update_profile" and client is AsyncRemoteClient:
            continue  # the async facade has no profile update
        method = getattr(client, name)
        assert method.__name__ == name
        assert method.__doc__ == core.__doc__ or name == "record_many"


def test_the_async_client_awaits_every_verb() -> None:
    for name in REMOTE:
        if name != "update_profile":
            assert inspect.iscoroutinefunction(getattr(AsyncRemoteClient, name)), name
