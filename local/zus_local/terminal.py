"""Ctrl-C for the stack alone, so that ``make dev`` ends with status 0 when the stack stops cleanly.

The terminal sends Ctrl-C's SIGINT to its foreground process group. Under ``make dev`` that is make's
group, the stack's too: the stack stops cleanly and exits 0, but make, on SIGINT, waits for its child
and then kills itself with the same signal, so ``make dev`` ends with 130 ("Interrupt", or "Error 130"
when a child exits 130) whatever the stack did. So, started from a terminal inside another program's
process group, the stack moves into a group of its own and makes it the terminal's foreground group,
as a shell does for a job: Ctrl-C then reaches the stack (and what it started) alone, and make sees its
child exit 0. The foreground goes back to the group it was taken from when the stack is done. Ctrl-Z is
ignored meanwhile: a stopped stack would hold the terminal with nobody to resume it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def foreground_of_its_own() -> Iterator[None]:
    """While the block runs, this process leads the terminal's foreground process group (when it
    has a terminal and is in another process's foreground group; otherwise nothing changes)."""
    try:
        terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:  # no controlling terminal: a test, CI, a service manager
        yield
        return
    try:
        previous = os.tcgetpgrp(terminal)
        if previous != os.getpgrp() or os.getpgrp() == os.getpid():
            yield  # a background job, or a group of its own already (started by a shell)
            return
        os.setpgid(0, 0)
        suspend = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
        _give_foreground(terminal, os.getpgrp())
        try:
            yield
        finally:
            _give_foreground(terminal, previous)
            signal.signal(signal.SIGTSTP, suspend)
    finally:
        os.close(terminal)


def _give_foreground(terminal: int, group: int) -> None:
    # A process outside the foreground group that sets it gets SIGTTOU (which would stop it): ignored.
    stop_on_write = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, group)
    except OSError:  # the group is gone (make was killed): the shell takes the terminal back itself
        pass
    finally:
        signal.signal(signal.SIGTTOU, stop_on_write)
