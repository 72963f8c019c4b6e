"""Put on a worker's PYTHONPATH by ``loadtest/profile_worker.py``: with
``PROFILE_WORKER_DIR`` set, a thread samples the worker's event-loop thread every
``PROFILE_WORKER_INTERVAL_MS`` (default 2) from the moment the driver creates ``start`` in
that folder until it creates ``stop``, and charges the loop thread's CPU time since the
previous sample to the stack it finds (CPU-weighted sampling, no tracing hook: a few
microseconds per sample, so the loop runs at its own pace; the switch interval is
``PROFILE_WORKER_SWITCH_MS``, default 0.2, meanwhile). Every event-loop callback's CPU
(``Handle._run``, timed with the thread's clock) is summed per owner: a task's step under
its coroutine, any other callback under its function. ``samples.json`` gets the CPU
seconds per stack, per callback owner and of each thread over the window. Anything else
imports as usual."""

from __future__ import annotations

import os
import sys

_DIR = os.environ.get("PROFILE_WORKER_DIR")

if _DIR and "worker" in sys.argv[1:2]:
    import asyncio.events
    import json
    import threading
    import time
    from pathlib import Path
    from typing import Any

    #: CPU seconds of the loop thread per callback owner (see _owner), while profiling.
    _callbacks: dict[str, float] = {}
    _profiling = threading.Event()
    _handle_run = asyncio.events.Handle._run

    def _owner(callback: object) -> str:
        """A task's step is charged to its coroutine, anything else to the callable."""
        task = getattr(callback, "__self__", None)
        if isinstance(task, asyncio.Task):
            coro: Any = task.get_coro()
            # mode runs each service's background task inside Service._execute_task.
            inner = getattr(coro, "cr_frame", None) and coro.cr_frame.f_locals.get("task")
            coro = inner if inner is not None else coro
            return f"task {getattr(coro, '__qualname__', type(coro).__name__)}"
        function = getattr(callback, "__func__", callback)
        module = getattr(function, "__module__", "") or ""
        return f"{module}.{getattr(function, '__qualname__', type(function).__name__)}"

    def _run(self: asyncio.events.Handle) -> None:
        if not _profiling.is_set():
            return _handle_run(self)
        began = time.thread_time()
        try:
            return _handle_run(self)
        finally:
            owner = _owner(self._callback)  # type: ignore[attr-defined]
            _callbacks[owner] = _callbacks.get(owner, 0.0) + time.thread_time() - began

    asyncio.events.Handle._run = _run  # type: ignore[method-assign]

    def _cpu(thread: threading.Thread) -> float:
        assert thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))

    def _sample(where: Path, loop: threading.Thread, interval: float) -> None:
        while not (where / "start").exists():
            time.sleep(0.05)
        stacks: dict[str, float] = {}
        others = [t for t in threading.enumerate() if t not in (loop, threading.current_thread())]
        began = {t.name: _cpu(t) for t in [loop, *others]}
        # A thread waiting for the GIL gets it when the loop thread blocks (in the selector)
        # or after the switch interval: at the default 5 ms, the loop's short busy spells
        # between two selects would never be seen, their CPU charged to the selector.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(float(os.environ.get("PROFILE_WORKER_SWITCH_MS", "0.2")) / 1000)
        process0, last = time.process_time(), _cpu(loop)
        _profiling.set()
        (where / "started").touch()
        while not (where / "stop").exists():
            time.sleep(interval)
            now = _cpu(loop)
            frame = sys._current_frames().get(loop.ident or 0)
            stack = []
            while frame is not None:
                stack.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")
                frame = frame.f_back
            key = ";".join(reversed(stack))
            stacks[key] = stacks.get(key, 0.0) + now - last
            last = now
        _profiling.clear()
        sys.setswitchinterval(switch)
        threads = {t.name: _cpu(t) - began[t.name] for t in [loop, *others] if t.is_alive()}
        report = {
            "loop_thread": loop.name,
            "threads_s": threads,
            "process_s": time.process_time() - process0,
            "stacks_s": dict(stacks),
            "callbacks_s": dict(_callbacks),
        }
        (where / "samples.json").write_text(json.dumps(report))

    interval = float(os.environ.get("PROFILE_WORKER_INTERVAL_MS", "2")) / 1000
    threading.Thread(
        target=_sample,
        args=(Path(_DIR), threading.main_thread(), interval),
        name="profile-worker",
        daemon=True,
    ).start()
