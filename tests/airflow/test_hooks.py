"""PreflightHook's async twins never run a verb on the event loop: remote mode awaits
``preflight.AsyncPreflight`` (no worker thread at all), and local mode, whose services are
synchronous, runs the sync facade in a worker thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from preflight.sandbox import SandboxServer
from tests.airflow.conftest import Connect


def test_the_async_twins_never_run_the_verb_on_the_event_loop(
    connect: Connect, vendor: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import preflight
    import preflight.airflow.hooks as hooks
    from preflight.airflow import PreflightHook

    pf = connect(vendor)
    #: (function name, thread it ran in, whether that thread had a running event loop)
    threaded: list[tuple[str, str, bool]] = []
    real_to_thread = asyncio.to_thread

    async def to_thread(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        name = getattr(function, "__name__", repr(function))

        def spied() -> Any:
            on_loop = _has_running_loop()
            threaded.append((name, threading.current_thread().name, on_loop))
            return function(*args, **kwargs)

        return await real_to_thread(spied)

    # The hook module's own name for asyncio: only the hook's hand-offs are counted.
    monkeypatch.setattr(hooks, "asyncio", _Asyncio(to_thread))

    opened: list[str] = []
    real_remote = preflight.AsyncPreflight.remote.__func__  # type: ignore[attr-defined]

    def remote(cls: type[Any], url: str, token: Any, **options: Any) -> Any:
        opened.append(url)
        return real_remote(cls, url, token, **options)

    monkeypatch.setattr(preflight.AsyncPreflight, "remote", classmethod(remote))

    async def story() -> tuple[str, int, str]:
        hook = PreflightHook()
        try:
            checked = await hook.acheck("async/run+1", need="10")
            recorded = await hook.arecord(
                "async/run+1", {"job_id": "j1", "status": "succeeded", "cost": "2"}
            )
            finished = await hook.afinish("async/run+1")
            shown = await hook.ashow("async/run+1")
        finally:
            await hook.aclose()
        assert recorded.created
        return checked.verdict.value, shown.outcomes.total, str(finished.summary.own_cost)

    assert asyncio.run(story()) == ("go", 1, "2")
    main = threading.main_thread().name
    if pf.mode == "serve":
        # One AsyncPreflight per verb, on the connection's server; nothing handed to a thread.
        assert len(opened) == 4
        assert threaded == []
    else:
        assert opened == []
        names = [name for name, _, _ in threaded]
        assert names[:2] == ["_facade", "check"]
        assert {"record", "finish", "show", "close"} <= set(names)
        # Every verb ran off the event loop's thread, in a thread without a loop of its own.
        assert all(thread != main and not on_loop for _, thread, on_loop in threaded)


class _Asyncio:
    """The asyncio module as the hook sees it, with ``to_thread`` spied on."""

    def __init__(self, to_thread: Callable[..., Any]) -> None:
        self.to_thread = to_thread

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
