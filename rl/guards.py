"""What keeps a long run safe: a clean stop on SIGTERM / Ctrl-C, a watchdog for stalled phases, and the guard that
keeps non-finite numbers away from the weights."""

import contextlib
import faulthandler
import signal
import sys
import threading
import time


_STALLED: list[str] = []  # the phase whose watchdog has fired and that has not ended yet


class Stalled(Exception):
    """A stop signal arrived while a phase was stalled (its watchdog had fired): the phase is abandoned."""

    def __init__(self, phase: str, signal_name: str):
        super().__init__(f"{signal_name} received while phase '{phase}' was stalled")
        self.phase, self.signal_name = phase, signal_name


class StepFailed(RuntimeError):
    """A phase before the update cannot go on (e.g. the reward workers cannot be kept alive); the weights are as the
    step found them."""


class StopRequest:
    """Inside the block, SIGTERM and SIGINT (Ctrl-C) only set `requested`: the loop finishes its step, checkpoints
    and exits cleanly; during a stalled phase (see `watchdog`) they raise Stalled instead, so that the run need not
    wait for the stall to end. A second Ctrl-C stops at once (exit 130, no traceback). Outside the main thread: a
    no-op."""

    def __init__(self, log=print):
        self.log, self.requested, self.signal_name, self._previous = log, False, "", {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            self.log("second Ctrl-C: stopping now, without a checkpoint")
            raise SystemExit(130)
        self.requested, self.signal_name = True, name
        if _STALLED:
            raise Stalled(_STALLED[-1], name)
        self.log(f"{name} received: finishing this step, then writing a checkpoint (Ctrl-C again stops at once)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        return False


def stop_at_once(when: str):
    """Outside the trainer's loop (start-up, the end): SIGTERM and Ctrl-C exit at once with one line saying `when`
    (what is saved), code 143 or 130. Outside the main thread: a no-op."""
    def handle(signum, frame):
        name = signal.Signals(signum).name
        print(f"{name} received {when}: exiting", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handle)


@contextlib.contextmanager
def watchdog(phase: str, seconds: float, log=print):
    """If the block runs longer than `seconds`, log which phase and the stack of every thread (once), and mark the
    phase stalled until it ends (a stop signal then abandons it: StopRequest); 0 = off."""
    if not seconds or seconds <= 0:
        yield
        return
    start = time.monotonic()

    def fire():
        log(f"watchdog: phase '{phase}' has run for {time.monotonic() - start:.0f} s (--stall-timeout {seconds:g}); "
            f"stacks of every thread follow")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        _STALLED.append(phase)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # a firing watchdog has finished marking the phase
        if phase in _STALLED:
            _STALLED.remove(phase)


class NonFinite(RuntimeError):
    """Too many steps in a row had a NaN or Inf; the message names the step and the phase."""


class NonFiniteGuard:
    """Counts skipped steps (a non-finite loss, gradient norm or reward) and stops after `max_in_row` in a row."""

    def __init__(self, max_in_row: int):
        self.max_in_row, self.in_row, self.skipped = max_in_row, 0, 0

    def ok(self, finite: bool, what: str, where: str) -> bool:
        """True when `finite`; else count the skip, and raise NonFinite after `max_in_row` skips in a row."""
        if finite:
            self.in_row = 0
            return True
        self.in_row += 1
        self.skipped += 1
        if self.in_row >= self.max_in_row:
            raise NonFinite(f"{self.in_row} steps in a row were skipped for a non-finite value; the last: {what} at "
                            f"{where}; lower the learning rate, check the data, or resume from the last checkpoint")
        return False
