"""File monitors: inotify and polling, on real temporary directories."""

from __future__ import annotations

import os
import select
import selectors
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from uwsgisig.errors import SignalNumberError
from uwsgisig.runtime.schedule import fsmon
from uwsgisig.runtime.schedule.fsmon import (
    WATCH_MASK,
    FileMonitor,
    FileMonitorProtocol,
    MonitorPathError,
    PollingFileMonitor,
    create_file_monitor,
    inotify_available,
)
from uwsgisig.runtime.schedule.timers import ScheduleError

pytestmark = pytest.mark.timeout(30)

needs_inotify = pytest.mark.skipif(not inotify_available(), reason="inotify is not available")

WAIT = 2.0  # upper bound for an expected event; it normally comes within a millisecond
QUIET = 0.1  # how long "nothing more happens" is watched


def wait_signals(monitor: FileMonitor, timeout: float = WAIT) -> list[int]:
    """Wait until the monitor is readable (bounded), then read it."""
    readable, _, _ = select.select([monitor], [], [], timeout)
    return monitor.read() if readable else []


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# Operations on a watched directory `d`, which holds `file` (with content) and `sub/`.
# Each must give exactly one signal (DESIGN: one per create, append, touch, unlink, mkdir).


def _create(d: Path) -> None:
    (d / "new").write_text("hello")  # IN_CREATE + IN_MODIFY


def _touch_new(d: Path) -> None:
    os.close(os.open(d / "new", os.O_CREAT | os.O_WRONLY))  # what touch(1) does:
    os.utime(d / "new", ns=(1_000_000_000, 2_000_000_000))  # IN_CREATE + IN_ATTRIB


def _append(d: Path) -> None:
    with open(d / "file", "a") as f:
        f.write("x\n")


def _touch(d: Path) -> None:
    os.utime(d / "file", ns=(3_000_000_000, 4_000_000_000))


def _unlink(d: Path) -> None:
    (d / "file").unlink()


def _mkdir(d: Path) -> None:
    (d / "newdir").mkdir()


def _rmdir(d: Path) -> None:
    (d / "sub").rmdir()


def _rename(d: Path) -> None:
    (d / "file").rename(d / "renamed")  # IN_MOVED_FROM + IN_MOVED_TO


def _chmod(d: Path) -> None:
    (d / "file").chmod(0o600)


DIRECTORY_OPERATIONS = [
    pytest.param(_create, id="create"),
    pytest.param(_touch_new, id="touch-new"),
    pytest.param(_append, id="append"),
    pytest.param(_touch, id="touch"),
    pytest.param(_unlink, id="unlink"),
    pytest.param(_mkdir, id="mkdir"),
    pytest.param(_rmdir, id="rmdir"),
    pytest.param(_rename, id="rename"),
    pytest.param(_chmod, id="chmod"),
]


@pytest.fixture
def watched_dir(tmp_path: Path) -> Path:
    d = tmp_path / "watched"
    d.mkdir()
    (d / "file").write_text("content\n")
    (d / "file").chmod(0o644)
    (d / "sub").mkdir()
    return d


@pytest.fixture
def inotify_monitor() -> Iterator[FileMonitor]:
    if not inotify_available():
        pytest.skip("inotify is not available")
    with FileMonitor() as monitor:
        yield monitor


# inotify --------------------------------------------------------------------------


def test_watch_mask_is_uwsgis() -> None:
    # IN_ATTRIB|IN_CREATE|IN_DELETE|IN_DELETE_SELF|IN_MODIFY|IN_MOVE_SELF|IN_MOVED_FROM|IN_MOVED_TO
    assert WATCH_MASK == 0x004 | 0x100 | 0x200 | 0x400 | 0x002 | 0x800 | 0x040 | 0x080


@needs_inotify
def test_watch_mask_matches_inotify_simple_flags() -> None:
    import inotify_simple

    f = inotify_simple.flags
    assert WATCH_MASK == (
        f.ATTRIB
        | f.CREATE
        | f.DELETE
        | f.DELETE_SELF
        | f.MODIFY
        | f.MOVE_SELF
        | f.MOVED_FROM
        | f.MOVED_TO
    )


@pytest.mark.parametrize("operation", DIRECTORY_OPERATIONS)
def test_inotify_directory_gives_one_signal_per_operation(
    inotify_monitor: FileMonitor, watched_dir: Path, operation: Callable[[Path], None]
) -> None:
    inotify_monitor.add(watched_dir, 17)

    operation(watched_dir)

    assert wait_signals(inotify_monitor) == [17]
    assert wait_signals(inotify_monitor, QUIET) == []


def test_inotify_shell_append_gives_one_signal(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    inotify_monitor.add(watched_dir, 17)

    subprocess.run(["sh", "-c", 'echo x >> "$1"', "sh", str(watched_dir / "file")], check=True)

    assert wait_signals(inotify_monitor) == [17]
    assert wait_signals(inotify_monitor, QUIET) == []


def test_inotify_watch_on_a_file_signals_its_changes(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    inotify_monitor.add(watched_dir / "file", 3)

    _append(watched_dir)
    assert wait_signals(inotify_monitor) == [3]

    _touch(watched_dir)
    assert wait_signals(inotify_monitor) == [3]


def test_inotify_is_not_recursive(inotify_monitor: FileMonitor, watched_dir: Path) -> None:
    inotify_monitor.add(watched_dir, 17)

    (watched_dir / "sub" / "deep").write_text("x")

    assert wait_signals(inotify_monitor, QUIET) == []


def test_inotify_nothing_queued_reads_empty_without_blocking(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    inotify_monitor.add(watched_dir, 17)

    assert inotify_monitor.read() == []


def test_inotify_separate_operations_give_separate_signals(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    inotify_monitor.add(watched_dir, 17)
    got = []

    for operation in (_create, _append, _unlink):
        operation(watched_dir)
        got += wait_signals(inotify_monitor)

    assert got == [17, 17, 17]


def test_inotify_two_paths_signal_in_event_order(
    inotify_monitor: FileMonitor, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    inotify_monitor.add(a, 1)
    inotify_monitor.add(b, 2)

    (b / "x").write_text("1")
    (a / "x").write_text("1")

    assert wait_signals(inotify_monitor) == [2, 1]


def test_inotify_same_path_with_two_signals_raises_both(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    inotify_monitor.add(watched_dir, 1)
    inotify_monitor.add(str(watched_dir), 2)
    inotify_monitor.add(watched_dir, 1)  # repeated: not doubled

    _append(watched_dir)

    assert wait_signals(inotify_monitor) == [1, 2]


def test_inotify_deleted_file_signals_once_then_its_watch_ends(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    target = watched_dir / "file"
    inotify_monitor.add(target, 4)

    target.unlink()
    assert wait_signals(inotify_monitor) == [4]

    target.write_text("back")
    assert wait_signals(inotify_monitor, QUIET) == []


def test_inotify_fileno_registers_with_selectors(
    inotify_monitor: FileMonitor, watched_dir: Path
) -> None:
    inotify_monitor.add(watched_dir, 17)
    with selectors.DefaultSelector() as selector:
        selector.register(inotify_monitor, selectors.EVENT_READ)

        _mkdir(watched_dir)
        ready = selector.select(WAIT)

    assert [key.fileobj for key, _ in ready] == [inotify_monitor]
    assert inotify_monitor.read() == [17]


def test_inotify_monitor_describes_itself_to_the_loop(inotify_monitor: FileMonitor) -> None:
    assert inotify_monitor.fileno() >= 0
    assert inotify_monitor.poll_interval is None
    assert inotify_monitor.next_check() is None
    assert isinstance(inotify_monitor, FileMonitorProtocol)


def test_inotify_without_coalesce_still_works(watched_dir: Path) -> None:
    if not inotify_available():
        pytest.skip("inotify is not available")
    with FileMonitor(coalesce=0) as monitor:
        monitor.add(watched_dir, 17)
        _append(watched_dir)

        assert wait_signals(monitor) == [17]


@pytest.mark.parametrize("coalesce", [-0.001, True, "1"])
def test_inotify_bad_coalesce_is_rejected(coalesce: object) -> None:
    if not inotify_available():
        pytest.skip("inotify is not available")
    with pytest.raises(ScheduleError, match=f"coalesce delay {coalesce!r}"):
        FileMonitor(coalesce=coalesce)  # type: ignore[arg-type]


class FakeINotify:
    """Stands in for inotify_simple.INotify to feed events the kernel rarely sends."""

    def __init__(self, batches: list[list[object]]) -> None:
        self.batches = batches
        self.next_wd = 1

    def add_watch(self, path: str, mask: int) -> int:
        self.next_wd += 1
        return self.next_wd - 1

    def read(self, timeout: int | None = None) -> list[object]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        pass


def _event(wd: int, mask: int) -> object:
    import inotify_simple

    return inotify_simple.Event(wd, mask, 0, "")


@needs_inotify
def test_inotify_queue_overflow_raises_every_signal_once(tmp_path: Path) -> None:
    monitor = FileMonitor(coalesce=0)
    monitor._inotify.close()
    monitor._inotify = FakeINotify([[_event(-1, 0x4000)]])
    monitor.add(tmp_path, 1)
    monitor.add(tmp_path, 2)  # the fake gives each add its own watch descriptor
    monitor.add(tmp_path, 1)

    assert monitor.read() == [1, 2]


@needs_inotify
def test_inotify_ignored_event_forgets_the_watch_without_a_signal(tmp_path: Path) -> None:
    monitor = FileMonitor(coalesce=0)
    monitor._inotify.close()
    monitor._inotify = FakeINotify([[_event(1, 0x8000)], [_event(1, 0x002)]])
    monitor.add(tmp_path, 5)

    assert monitor.read() == []
    assert monitor.read() == []  # a late event on the dead descriptor is ignored


@needs_inotify
def test_inotify_coalesce_merges_events_that_arrive_just_after_the_first(tmp_path: Path) -> None:
    monitor = FileMonitor(coalesce=0.001)
    monitor._inotify.close()
    monitor._inotify = FakeINotify([[_event(1, 0x100)], [_event(1, 0x004)], [_event(1, 0x200)]])
    monitor.add(tmp_path, 5)

    assert monitor.read() == [5]  # CREATE, then ATTRIB after the delay: one batch
    assert monitor.read() == [5]
    assert monitor.read() == []


# Both implementations: bad paths and signals ---------------------------------------------


def _make_inotify() -> FileMonitor | PollingFileMonitor:
    if not inotify_available():
        pytest.skip("inotify is not available")
    return FileMonitor()


def _make_polling() -> FileMonitor | PollingFileMonitor:
    return PollingFileMonitor(clock=FakeClock())


MAKERS = [pytest.param(_make_inotify, id="inotify"), pytest.param(_make_polling, id="polling")]


@pytest.mark.parametrize("make", MAKERS)
def test_missing_path_is_rejected_naming_it(
    make: Callable[[], FileMonitor | PollingFileMonitor], tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    with make() as monitor, pytest.raises(MonitorPathError) as caught:
        monitor.add(missing, 17)

    error = caught.value
    assert isinstance(error, FileNotFoundError)
    assert isinstance(error, ScheduleError)
    assert isinstance(error, ValueError)
    assert error.filename == str(missing)
    assert str(missing) in str(error)


@pytest.mark.parametrize("make", MAKERS)
def test_dangling_symlink_counts_as_missing(
    make: Callable[[], FileMonitor | PollingFileMonitor], tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with make() as monitor, pytest.raises(MonitorPathError):
        monitor.add(link, 17)


@pytest.mark.parametrize("make", MAKERS)
@pytest.mark.parametrize("path", ["", 5, None])
def test_path_that_is_not_a_path_is_rejected(
    make: Callable[[], FileMonitor | PollingFileMonitor], path: object
) -> None:
    with make() as monitor, pytest.raises(ScheduleError, match=f"path {path!r}"):
        monitor.add(path, 17)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", MAKERS)
def test_bad_signal_number_is_rejected(
    make: Callable[[], FileMonitor | PollingFileMonitor], tmp_path: Path
) -> None:
    with make() as monitor, pytest.raises(SignalNumberError):
        monitor.add(tmp_path, 256)


# Polling ----------------------------------------------------------------------------


@pytest.fixture
def polling() -> PollingFileMonitor:
    return PollingFileMonitor(interval=0.5, clock=FakeClock())


@pytest.mark.parametrize("operation", DIRECTORY_OPERATIONS)
def test_polling_directory_gives_one_signal_per_operation(
    polling: PollingFileMonitor, watched_dir: Path, operation: Callable[[Path], None]
) -> None:
    polling.add(watched_dir, 17)

    operation(watched_dir)

    assert polling.read() == [17]
    assert polling.read() == []


def test_polling_unchanged_path_gives_nothing(
    polling: PollingFileMonitor, watched_dir: Path
) -> None:
    polling.add(watched_dir, 17)
    polling.add(watched_dir / "file", 18)

    assert polling.read() == []


def test_polling_file_watch_sees_a_same_size_rewrite_with_new_mtime(
    polling: PollingFileMonitor, watched_dir: Path
) -> None:
    target = watched_dir / "file"
    polling.add(target, 3)

    target.write_text("CONTENT\n")
    os.utime(target, ns=(5_000_000_000, 6_000_000_000))

    assert polling.read() == [3]


def test_polling_is_not_recursive(polling: PollingFileMonitor, watched_dir: Path) -> None:
    polling.add(watched_dir, 17)

    (watched_dir / "sub" / "deep").write_text("x")  # changes sub's mtime, not its entry

    assert polling.read() == []


def test_polling_deleted_path_signals_once_and_again_when_it_comes_back(
    polling: PollingFileMonitor, watched_dir: Path
) -> None:
    target = watched_dir / "file"
    polling.add(target, 4)

    target.unlink()
    assert polling.read() == [4]
    assert polling.read() == []

    target.write_text("back")
    assert polling.read() == [4]


def test_polling_two_paths_signal_in_the_order_added(
    polling: PollingFileMonitor, tmp_path: Path
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    polling.add(a, 1)
    polling.add(b, 2)

    (b / "x").write_text("1")
    (a / "x").write_text("1")

    assert polling.read() == [1, 2]


def test_polling_two_names_of_one_path_share_a_watch(
    polling: PollingFileMonitor, watched_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(watched_dir)
    polling.add(watched_dir, 1)
    polling.add(link, 2)
    polling.add(link, 2)

    _mkdir(watched_dir)

    assert polling.read() == [1, 2]


def test_polling_next_check_follows_its_clock(watched_dir: Path) -> None:
    clock = FakeClock(100.0)
    monitor = PollingFileMonitor(interval=0.25, clock=clock)
    assert monitor.next_check() == 100.25

    clock.now = 101.0
    monitor.read()

    assert monitor.next_check() == 101.25


def test_polling_monitor_describes_itself_to_the_loop(polling: PollingFileMonitor) -> None:
    assert polling.fileno() == -1
    assert polling.poll_interval == 0.5
    assert isinstance(polling, FileMonitorProtocol)


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), True, "1"])
def test_polling_bad_interval_is_rejected(interval: object) -> None:
    with pytest.raises(ScheduleError, match=f"poll interval {interval!r}"):
        PollingFileMonitor(interval=interval)  # type: ignore[arg-type]


def test_polling_closed_monitor_refuses_work(polling: PollingFileMonitor, tmp_path: Path) -> None:
    polling.close()

    with pytest.raises(ValueError, match="closed"):
        polling.read()
    with pytest.raises(ValueError, match="closed"):
        polling.add(tmp_path, 1)


# Factory -------------------------------------------------------------------------------


def test_factory_forced_polling_gives_a_polling_monitor() -> None:
    with create_file_monitor(polling=True, interval=2.0) as monitor:
        assert isinstance(monitor, PollingFileMonitor)
        assert monitor.poll_interval == 2.0


@needs_inotify
def test_factory_prefers_inotify_when_available() -> None:
    with create_file_monitor() as monitor:
        assert isinstance(monitor, FileMonitor)


def test_factory_falls_back_to_polling_without_inotify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsmon, "inotify_simple", None)

    assert not inotify_available()
    with create_file_monitor() as monitor:
        assert isinstance(monitor, PollingFileMonitor)
    with pytest.raises(OSError, match="inotify is not available"):
        create_file_monitor(polling=False)
