"""One background asyncio loop per process, so sync faces (magics, CLI) can drive async executors.

A notebook kernel already runs its own loop in the main thread; executors live on this
loop instead, so a magic can block on them without nesting loops.
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, wait
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")

#: Seconds a wait blocks at most before Python looks for a signal it has not acted on yet.
WAKE = 0.25

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop, started in a daemon thread on first use."""
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="split-loop", daemon=True).start()
        return _loop


def submit(coro: Awaitable[T]) -> Future[T]:
    """Schedule `coro` on the background loop; the returned future can be waited on from any thread."""
    return asyncio.run_coroutine_threadsafe(coro, loop())  # type: ignore[arg-type]


def run(coro: Awaitable[T], on_interrupt: Callable[[int], Any] | None = None) -> T:
    """Run `coro` on the background loop and wait for it.

    A KeyboardInterrupt while waiting (the notebook's stop button) calls `on_interrupt(n)`
    with the count so far and keeps waiting. Without a handler, or where the handler raises
    (its own KeyboardInterrupt, saying what goes on), it cancels `coro` and raises.
    """
    future = submit(coro)
    interrupts = 0
    while True:
        try:
            # in turns, never one blocking wait: a Ctrl-C whose signal came just before the wait blocked,
            # or on another thread, interrupts nothing, and Python sees it only at the next turn
            if wait([future], timeout=WAKE).done:
                return future.result()
        except KeyboardInterrupt:
            interrupts += 1
            try:
                if on_interrupt is None:
                    raise
                on_interrupt(interrupts)
            except BaseException:
                future.cancel()
                raise
