"""The children's lives: spawn, reap, respawn with backoff, reload, stop.

Each child runs in a process group of its own, so a signal sent to the
master's group (``kill -TERM -PGID``, systemd, ``timeout``) reaches the master
alone and the master decides what its children do; a process that a handler
forked stays in its worker's group and is killed with it when the runtime
stops. Stop and reload signals are blocked across ``fork`` so a child never
swallows one with the master's handler before it has its own.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence

from ..ipc.posix import STOP_SIGNALS, blocked, describe_exit, kill, kill_group
from ..wire.frames import Op
from .backoff import respawn_delay
from .command import Command
from .peers import Slot

__all__ = ["Supervisor"]

log = logging.getLogger("uwsgisig")



def _setpgid_race() -> contextlib.suppress:
    """``setpgid`` fails once the other side of the fork did it and the child moved on."""
    return contextlib.suppress(PermissionError, ProcessLookupError)


class Supervisor:
    """Forks a process for each slot and keeps it filled until the runtime stops.

    ``launch(slot)`` runs in the new child and returns its exit code;
    ``lost(slot)`` runs in the master after a child exited and before it is
    replaced; ``describe_work(slot)`` names what a child is busy with, for the
    log line of a stop that must interrupt it.
    """

    def __init__(
        self,
        slots: Sequence[Slot],
        *,
        launch: Callable[[Slot], int],
        lost: Callable[[Slot], None],
        describe_work: Callable[[Slot], str],
        touch: Callable[[Slot], None],
        stop_timeout: float,
        reload_timeout: float,
        wait_wakeup: Callable[[float], None],
    ) -> None:
        self.slots = list(slots)
        self.command: Command | None = None  # run beside the children (`master.command`)
        self.helpers: list[Command] = []  # more processes beside them, never reloaded
        self._chain: list[Slot] = []  # a chain reload's slots still to reload, in order
        self.launch = launch
        self.lost = lost
        self.describe_work = describe_work
        self.touch = touch
        self.stop_timeout = stop_timeout
        self.reload_timeout = reload_timeout
        self.wait_wakeup = wait_wakeup
        self.stopping = False
        self.by_pid: dict[int, Slot] = {}
        self.groups: set[int] = set()  # process groups of children, with grandchildren maybe
        self._later: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # ---------------------------------------------------------------- spawn

    def spawn_all(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        """Fork the process for ``slot``. The child never returns into master code."""
        with blocked(STOP_SIGNALS):
            pid = os.fork()
            if pid == 0:
                self._be_child(slot)
        with _setpgid_race():
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        if slot.started_at:
            slot.respawns += 1
        slot.pid = pid
        slot.ready = False
        slot.reloading = False
        slot.started_at = time.monotonic()
        self.by_pid[pid] = slot
        self.groups.add(pid)
        log.debug("spawned %s (pid %d)", slot.describe(), pid)

    def _be_child(self, slot: Slot) -> None:
        code = 1
        try:
            with _setpgid_race():
                os.setpgid(0, 0)
            code = self.launch(slot)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    # ---------------------------------------------------------------- reap

    def reap(self) -> None:
        """Collect every exited child; respawn it unless the runtime is stopping."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.by_pid.pop(pid, None)
            if slot is None:
                self._other_exited(pid, os.waitstatus_to_exitcode(status))
                continue
            slot.pid = None
            slot.ready = False
            self.lost(slot)
            self._after_exit(slot, pid, os.waitstatus_to_exitcode(status))

    def _other_exited(self, pid: int, code: int) -> None:
        for command in self._commands():
            if pid == command.pid:
                command.exited(code)
                if not kill_group(pid, 0):
                    self.groups.discard(pid)

    def _commands(self) -> list[Command]:
        return [*([self.command] if self.command is not None else []), *self.helpers]

    def start_command(self) -> None:
        """Start the command and the helpers, once the children are started."""
        for command in self._commands():
            command.start()
            assert command.pid is not None
            self.groups.add(command.pid)

    def _after_exit(self, slot: Slot, pid: int, code: int) -> None:
        if not kill_group(pid, 0):
            self.groups.discard(pid)
        if self.stopping:
            return
        if slot.reloading:
            log.info("%s (pid %d) reloaded", slot.describe(), pid)
            self.spawn(slot)
            return
        log.warning(
            "%s (pid %d) exited with %s: respawning", slot.describe(), pid, describe_exit(code)
        )
        lived = time.monotonic() - slot.started_at
        slot.respawn_delay = respawn_delay(lived, slot.respawn_delay)
        if not slot.respawn_delay:
            self.spawn(slot)
            return
        log.warning(
            "%s died %.2f s after its start: respawn in %.1f s",
            slot.describe(),
            lived,
            slot.respawn_delay,
        )
        self.call_later(slot.respawn_delay, lambda: self._respawn_if_empty(slot))

    def _respawn_if_empty(self, slot: Slot) -> None:
        if not self.stopping and slot.pid is None:
            self.spawn(slot)

    # ---------------------------------------------------------------- reload

    def reload(self, slots: Sequence[Slot]) -> None:
        """Graceful reload: each child runs what was queued before, exits, and is replaced.

        Signals queued after the RELOAD frame are not lost: the replacement
        gets them (see `Slot.recover`).
        """
        log.info("reloading %d workers", len(slots))
        for slot in slots:
            if slot.pid is None:
                continue
            slot.reloading = True
            slot.put(Op.RELOAD)
            self.touch(slot)
            pid = slot.pid
            self.call_later(self.reload_timeout, lambda s=slot, p=pid: self._kill_stale(s, p))

    def chain_reload(self, slots: Sequence[Slot]) -> None:
        """Reload ``slots`` one at a time: the next only once the new first one is ready."""
        self._chain = [slot for slot in slots if slot.pid is not None]
        log.info("chain reload of %d workers", len(self._chain))
        self._next_in_chain()

    def became_ready(self, slot: Slot) -> None:
        """``slot``'s child is ready: a chain reload waiting for it goes on."""
        if self._chain and self._chain[0] is slot and not slot.reloading:
            self._chain.pop(0)
            self._next_in_chain()

    def _next_in_chain(self) -> None:
        while self._chain and self._chain[0].pid is None:
            self._chain.pop(0)  # gone meanwhile: its respawn is a fresh one anyway
        if self._chain:
            self.reload(self._chain[:1])

    def restart(self, slot: Slot) -> None:
        """End ``slot``'s child now (SIGTERM) and start another: for loops that read no frame."""
        if slot.pid is not None:
            slot.reloading = True
            kill_group(slot.pid, signal.SIGTERM)

    def _kill_stale(self, slot: Slot, pid: int) -> None:
        if slot.pid == pid and slot.reloading:
            log.warning(
                "%s (pid %d) did not reload within %g s: killing it",
                slot.describe(),
                pid,
                self.reload_timeout,
            )
            kill_group(pid, signal.SIGKILL)

    # ---------------------------------------------------------------- stop

    def stop(self, *, graceful: bool) -> None:
        """Stop every child and what it forked; return once they are all reaped.

        Quick: SIGTERM, which ends a child at once. Graceful: SIGHUP, on which a
        child finishes the handler it runs and exits. Either way, whatever is
        still alive after ``stop_timeout`` is killed, and a graceful stop logs
        what each killed child was doing.
        """
        self.stopping = True
        for command in self._commands():
            command.begin_stop()
        for pid in list(self.by_pid):
            if graceful:
                kill(pid, signal.SIGHUP)
            else:
                kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self._alive() and time.monotonic() < deadline:
            self.wait_wakeup(deadline - time.monotonic())
            self.reap()
        for command in self._commands():
            command.kill()
        for pid, slot in list(self.by_pid.items()):
            if graceful:
                log.warning(
                    "%s (pid %d) was still %s after %g s: killing it",
                    slot.describe(),
                    pid,
                    self.describe_work(slot),
                    self.stop_timeout,
                )
            else:
                log.warning("pid %d ignored SIGTERM for %g s: killing it", pid, self.stop_timeout)
            kill_group(pid, signal.SIGKILL)
        while self._alive():
            self.wait_wakeup(1.0)
            self.reap()
        for group in self.groups:
            # What handlers forked and left behind goes with the runtime.
            kill_group(group, signal.SIGKILL)
        self.groups.clear()

    def _alive(self) -> bool:
        return bool(self.by_pid) or any(command.pid is not None for command in self._commands())

    # ---------------------------------------------------------------- timers

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the master's loop after ``delay`` seconds."""
        heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), callback))

    def run_due(self) -> float | None:
        """Run what is due; return the seconds until the next callback, None if none."""
        while self._later:
            due = self._later[0][0]
            now = time.monotonic()
            if due > now:
                return due - now
            _, _, callback = heapq.heappop(self._later)
            callback()
        return None
