"""Process pool with a hard wall-clock limit per task.

A task that runs past its deadline has its worker SIGKILLed and replaced; the
rest of the batch goes on. This is needed because math-verify's own timeouts
use signal.alarm, which only works on the main thread and cannot interrupt a
long C call (e.g. a huge integer power).

A worker that dies while starting (its setup raised, it was killed, the process
could not be created, or it was not ready in time) is started again and counted
(`stats["start_failures"]`); only `max_start_failures` failures in a row, with no
worker becoming ready in between, stop the pool with an error naming the cause.
"""
import itertools
import multiprocessing as mp
import os
import signal
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, Callable


@dataclass
class _Worker:
    proc: Any
    conn: Any
    started: float
    ready: bool = False
    task: tuple[int, int] | None = None  # (task id, index in the batch)
    deadline: float = 0.0


def _worker_main(conn, fn, setup, setup_args) -> None:
    # Ctrl-C reaches the whole process group; shutting workers down is the parent's job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if setup is not None:
        try:
            setup(*setup_args)
        except BaseException as e:  # noqa: BLE001 - reported to the parent as the cause of a failed start
            try:
                conn.send(("start_error", f"{type(e).__name__}: {str(e)[:300]}"))
            finally:
                os._exit(1)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent is gone
        if msg is None:
            return
        task_id, args = msg
        try:
            out = ("ok", fn(*args))
        except MemoryError:
            out = ("error", "MemoryError")
        except Exception as e:
            # Only the type name: str() of a sympy object can itself be slow.
            out = ("error", type(e).__name__)
        try:
            conn.send((task_id, out))
        except (BrokenPipeError, OSError):
            return


def _stop(w: _Worker, grace: float = 0.0) -> None:
    """Stop a worker and reap it (no zombies)."""
    if grace > 0 and w.task is None:
        try:
            w.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        w.proc.join(grace)
    if w.proc.is_alive():
        w.proc.kill()
    w.proc.join()
    w.conn.close()


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        _stop(w, grace=1.0)
    workers.clear()


def _exit_cause(proc) -> str:
    code = proc.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exit code {code}"


class KillPool:
    """Runs `fn(*args)` in worker processes; `map` returns ("ok", value), ("timeout", None) or ("error", name).

    `stats` counts, over the pool's life: "restarts" (a worker replaced after a time-out, an error or a crash),
    "start_failures" (a worker that died or hung while starting, or could not be created). `max_check_s` is the
    longest a task that finished took (from dispatch to result), `max_kill_delay_s` the longest a timed-out task
    ran past its deadline before its worker was killed."""

    def __init__(self, fn: Callable, *, workers: int = 2, timeout: float = 5.0,
                 setup: Callable | None = None, setup_args: tuple = (),
                 mp_context: str = "spawn", startup_timeout: float = 120.0, max_start_failures: int = 3):
        if workers < 1 or timeout <= 0 or max_start_failures < 1:
            raise ValueError("need workers >= 1, timeout > 0 and max_start_failures >= 1")
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.max_start_failures = max_start_failures
        self.stats: Counter = Counter(restarts=0, start_failures=0)
        self._failed_in_a_row = 0
        self._broken: str | None = None
        self.max_check_s = 0.0
        self.max_kill_delay_s = 0.0
        self._target_args = (fn, setup, setup_args)
        self._ctx = mp.get_context(mp_context)  # never fork: the parent may hold CUDA / threads
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._workers.extend(self._start() for _ in range(workers))
        # Runs on close(), on garbage collection, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    @property
    def busy_pids(self) -> list[int]:
        """Workers running a task now (for fault-injection tests)."""
        return [w.proc.pid for w in list(self._workers) if w.task]

    def close(self) -> None:
        self._finalizer()

    def _start(self) -> _Worker:
        while True:
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=_worker_main, args=(child, *self._target_args),
                                     name="reward-worker", daemon=True)
            try:
                proc.start()
            except OSError as e:  # fork/spawn refused: no memory, too many processes, ...
                parent.close()
                child.close()
                self._start_failed(f"cannot create a process ({e.strerror or e})")
                continue
            child.close()  # so that the worker's death shows up as EOF on `parent`
            return _Worker(proc, parent, time.monotonic())

    def _start_failed(self, cause: str) -> None:
        """Count a failed start; raise once `max_start_failures` happened in a row."""
        self.stats["start_failures"] += 1
        self._failed_in_a_row += 1
        if self._failed_in_a_row >= self.max_start_failures:
            n = self._failed_in_a_row
            self._broken = (f"reward worker failed to start {n} time{'s' if n > 1 else ''}"
                            f"{' in a row' if n > 1 else ''} (last cause: {cause})")
            raise RuntimeError(self._broken)
        time.sleep(min(0.05 * 2 ** self._failed_in_a_row, 2.0))  # resource trouble passes; do not spin

    def _replace(self, w: _Worker) -> None:
        _stop(w)
        self.stats["restarts"] += 1
        self._workers[self._workers.index(w)] = self._start()

    def _restart_failed_start(self, w: _Worker, cause: str) -> None:
        _stop(w)
        self._start_failed(cause)
        self._workers[self._workers.index(w)] = self._start()

    def map(self, tasks: list[tuple]) -> list[tuple[str, Any]]:
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("pool is closed")
            if self._broken:
                raise RuntimeError(self._broken)
            results: list = [None] * len(tasks)
            todo = deque(range(len(tasks)))
            try:
                while todo or any(w.task for w in self._workers):
                    self._dispatch(tasks, todo)
                    self._poll(results)
            finally:
                # Only non-empty after an exception (e.g. KeyboardInterrupt): drop the
                # abandoned tasks so their late results cannot leak into the next batch.
                for w in list(self._workers):
                    if w.task:
                        self._replace(w)
            return results

    def _dispatch(self, tasks: list[tuple], todo: deque) -> None:
        for w in list(self._workers):
            if not (w.ready and w.task is None and todo):
                continue
            i = todo.popleft()
            task_id = next(self._ids)
            try:
                w.conn.send((task_id, tasks[i]))
            except (BrokenPipeError, OSError):
                todo.appendleft(i)  # worker died while idle: retry the task elsewhere
                self._replace(w)
                continue
            w.task, w.deadline = (task_id, i), time.monotonic() + self.timeout

    def _poll(self, results: list) -> None:
        due = [w.deadline for w in self._workers if w.task]
        due += [w.started + self.startup_timeout for w in self._workers if not w.ready]
        wait_s = max(0.0, min(due) - time.monotonic()) if due else None
        by_conn = {w.conn: w for w in self._workers}
        for conn in wait(list(by_conn), wait_s):
            w = by_conn[conn]
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                msg = None  # the worker died: crash, OOM killer, ...
            if msg is None:
                if not w.ready:
                    w.proc.join(1.0)
                    self._restart_failed_start(w, _exit_cause(w.proc))
                    continue
                if w.task:
                    results[w.task[1]] = ("error", "worker died")
                self._replace(w)
            elif msg[0] == "ready":
                w.ready = True
                self._failed_in_a_row = 0
            elif msg[0] == "start_error":
                self._restart_failed_start(w, msg[1])
            else:
                task_id, out = msg
                if w.task and w.task[0] == task_id:
                    results[w.task[1]] = out
                    w.task = None
                    self.max_check_s = max(self.max_check_s, time.monotonic() - (w.deadline - self.timeout))
                if out[0] == "error":
                    self._replace(w)  # e.g. after a MemoryError its state is suspect
        now = time.monotonic()
        for w in list(self._workers):
            if w.task and now >= w.deadline:
                results[w.task[1]] = ("timeout", None)
                self.max_kill_delay_s = max(self.max_kill_delay_s, now - w.deadline)
                self._replace(w)
            elif not w.ready and now >= w.started + self.startup_timeout:
                self._restart_failed_start(w, f"not ready after {self.startup_timeout:g} s")
