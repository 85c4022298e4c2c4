"""The spool's journal: one data sync makes a spooled job durable, and no file per job.

Making a job file durable on its own costs a file creation and two syncs
(the file, then its directory), and on a journaling file system a sync that
follows a file creation commits the creation too: about four times the cost
of syncing an append (``bench/bench_spooler.py`` measures both floors); and
creating the file at all costs more than running a trivial job. So
``spool()`` appends the job to its process's journal in the spool directory
and syncs that one file's data, as a database commits to its write-ahead
log, and the spooler runs jobs straight from the journals.

Each journal has a cursor (``.cursor-ID``: the boot id and an offset): the
records before it were handed to a spooler process (`Dispenser`), under an
exclusive `flock` on the cursor file, so that each record goes to exactly
one process. Before it moves the cursor, that process writes which record
it runs in its running mark, so a job whose process dies is found again. A
job that does not end done (it failed, was ignored, must wait) becomes a
job file, written durably, and goes on as a file.

A writer holds an exclusive `flock` on its journal while it writes to it
(the kernel drops it when the writer dies; a writer moves to a new journal
after `ROTATE_BYTES` or `ROTATE_SECONDS`). A journal whose writer is gone,
whose records were all handed out, and that no running mark names, is
retired (`retire`): deleted.

The cursor is written without a sync: it must outlive processes, not the
machine. After a restart of the machine (the cursor's boot id is not this
boot's), every job of an unretired journal that is not a file becomes one
(`Dispenser.refile`): a job done before the crash may run again so (at least once),
at most the jobs of the unretired journals, which `ROTATE_BYTES` and
`ROTATE_SECONDS` bound.

Where the boot cannot be told apart (no ``/proc/sys/kernel/random/boot_id``),
there is no journal: each job is a file, written and synced on its own.

A journal is a header line (`MAGIC` and the boot id), then records: the
payload's length and CRC-32, then the job's path relative to the spool
directory, a NUL byte, and the job file's bytes. A record cut short by a
crash (its ``spool()`` never returned) ends the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import attrs

__all__ = [
    "BOOT_ID",
    "CURSOR_PREFIX",
    "Dispenser",
    "JOURNAL_PREFIX",
    "MAGIC",
    "RECORD",
    "ROTATE_BYTES",
    "ROTATE_SECONDS",
    "TEMPORARY_PREFIX",
    "JobRef",
    "JournalWriter",
    "Record",
    "close_journals",
    "cursor_of",
    "journal_for",
    "journal_of",
    "journals",
    "read_header",
    "read_records",
    "record_at",
    "retire",
    "sync_directory",
    "waiting",
    "write_file",
]

MAGIC = b"uwsgisig-spool-journal 1 "
RECORD = struct.Struct("<II")  # the payload's length, its CRC-32
HEADER_MAX = 256  # bytes: `MAGIC` and a boot id are shorter
ROTATE_BYTES = 64 << 10  # a writer starts a new journal past this size,
ROTATE_SECONDS = 60.0  # or this age, so that old ones retire
JOURNAL_PREFIX = ".journal-"
CURSOR_PREFIX = ".cursor-"  # + the journal's name without its prefix
TEMPORARY_PREFIX = ".job-"  # with the writer's pid: `SpoolDir.remove_abandoned` cleans them
_sequence = itertools.count()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


BOOT_ID: str | None = _boot_id()  # this boot of the machine; None: no journal


def write_file(path: Path, content: bytes, *, sync: bool) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed); with ``sync``,
    durably (the file's data, then its directory)."""
    temporary = path.with_name(
        f"{TEMPORARY_PREFIX}{path.name}-{os.getpid()}-{next(_sequence):08d}.tmp"
    )
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, content)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)
    if sync:
        sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """Make the names in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ writing


class JournalWriter:
    """This process's journal in one spool directory; threads share it."""

    def __init__(self, directory: Path, boot: str) -> None:
        self.directory = directory
        self.boot = boot
        self._fd: int | None = None
        self._size = 0
        self._started = 0.0
        self._lock = threading.Lock()

    def append(self, name: str, content: bytes) -> None:
        """Record job file ``name`` (relative to the directory) with ``content``, durably."""
        payload = name.encode() + b"\0" + content
        record = RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if (
                self._fd is None
                or self._size >= ROTATE_BYTES
                or time.monotonic() - self._started >= ROTATE_SECONDS
            ):
                self._start()
            assert self._fd is not None
            try:
                if os.write(self._fd, record) != len(record):
                    raise OSError(f"short write to the spool journal in {self.directory}")
                os.fdatasync(self._fd)
            except BaseException:
                # Take the record back, so that a spool() that raised spooled nothing (if
                # that fails too, the record may be taken in); the next one starts anew.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                self.close()
                raise
            self._size += len(record)

    def close(self) -> None:
        """Stop writing to the current journal (a spooler may retire it now)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def forget(self) -> None:
        """In a forked child: drop the parent's journal (the parent's descriptor keeps
        its lock)."""
        self.close()
        self._lock = threading.Lock()

    def _start(self) -> None:
        self.close()
        pid = os.getpid()
        temporary = self.directory / f"{TEMPORARY_PREFIX}journal-{pid}-{next(_sequence):08d}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # before the journal is seen under its name
            header = MAGIC + self.boot.encode() + b"\n"
            os.write(fd, header)
            os.fsync(fd)
            name = f"{JOURNAL_PREFIX}{time.time_ns():020d}-{pid}-{next(_sequence):08d}"
            os.rename(temporary, self.directory / name)
            sync_directory(self.directory)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        self._fd, self._size, self._started = fd, len(header), time.monotonic()


_writers: dict[Path, JournalWriter] = {}
_writers_lock = threading.Lock()


def journal_for(directory: Path) -> JournalWriter | None:
    """This process's journal writer for spool ``directory``; None where there is no journal."""
    boot = BOOT_ID
    if boot is None:
        return None
    with _writers_lock:
        writer = _writers.get(directory)
        if writer is None or writer.boot != boot:
            real = Path(os.path.realpath(directory))  # two spellings of it share a journal
            writer = _writers.get(real)
            if writer is None or writer.boot != boot:
                writer = _writers[real] = JournalWriter(real, boot)
            _writers[directory] = writer
        return writer


def close_journals() -> None:
    """Close this process's journals, so that they can retire (as at its exit)."""
    with _writers_lock:
        for writer in _writers.values():
            writer.close()
        _writers.clear()


def _forget_writers() -> None:
    global _writers_lock
    _writers_lock = threading.Lock()
    for writer in _writers.values():
        writer.forget()
    _writers.clear()


os.register_at_fork(after_in_child=_forget_writers)


# ------------------------------------------------------------------ reading


def read_header(data: bytes) -> tuple[str, int]:
    """The boot id a journal was written in, and where its records start."""
    end = data.find(b"\n")
    if not data.startswith(MAGIC) or end < 0:
        raise ValueError("not a spool journal")
    return data[len(MAGIC) : end].decode(), end + 1


class Record(NamedTuple):
    """A whole record of a journal."""

    name: str  # the job file's path, relative to the spool directory
    content: bytes  # the job file's bytes
    start: int  # its offset in the journal
    end: int  # the offset after it


def read_records(data: bytes, offset: int) -> list[Record]:
    """The whole records of a journal's bytes from ``offset`` on."""
    records: list[Record] = []
    while offset + RECORD.size <= len(data):
        length, crc = RECORD.unpack_from(data, offset)
        payload = data[offset + RECORD.size : offset + RECORD.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break  # being written, or cut short by a crash: its spool() never returned
        name, _, content = payload.partition(b"\0")
        end = offset + RECORD.size + length
        records.append(Record(name.decode(), content, offset, end))
        offset = end
    return records


def _record_at(fd: int, offset: int) -> Record | None:
    """The whole record at ``offset`` of the journal open as ``fd``, if there is one."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, RECORD.size, offset)
    if len(head) < RECORD.size:
        return None
    length, _ = RECORD.unpack(head)
    if offset + RECORD.size + length > size:
        return None  # being written, or cut short by a crash
    return next(iter(read_records(head + os.pread(fd, length, offset + RECORD.size), 0)), None)


def journals(directory: Path) -> list[Path]:
    """The journals in spool ``directory``, oldest first."""
    return sorted(entry for entry in directory.iterdir() if entry.name.startswith(JOURNAL_PREFIX))


def cursor_of(journal: Path) -> Path:
    """The file that holds how far ``journal`` was handed out."""
    return journal.with_name(CURSOR_PREFIX + journal.name[len(JOURNAL_PREFIX) :])


def journal_of(cursor: Path) -> Path:
    """The journal whose cursor is ``cursor``."""
    return cursor.with_name(JOURNAL_PREFIX + cursor.name[len(CURSOR_PREFIX) :])


@attrs.frozen
class JobRef:
    """A job in a journal, handed to this process."""

    journal: Path
    offset: int  # where its record starts
    name: str  # its job file's path, relative to the spool directory
    content: bytes  # its job file's bytes


class Dispenser:
    """Hands the jobs of one journal out to this process, one at a time; it keeps the
    journal and its cursor open from one job to the next."""

    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self._journal_fd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC)
        try:
            cursor = cursor_of(journal)
            self._cursor_fd = os.open(cursor, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException:
            os.close(self._journal_fd)
            raise

    def next(self, boot: str, mark: Callable[[JobRef], None]) -> JobRef | None:
        """The next job, ``mark`` called with it before the cursor moves past it; None if
        the journal has no whole record left (or was handed out before a restart of the
        machine: see `refile`)."""
        with self._locked():
            if not self.journal.exists():
                return None  # retired meanwhile
            cursor_boot, offset = _read_cursor(self._cursor_fd)
            if cursor_boot not in (None, boot):
                return None
            if cursor_boot is None:
                try:
                    _, offset = read_header(os.pread(self._journal_fd, HEADER_MAX, 0))
                except ValueError:
                    return None  # not a journal
            found = _record_at(self._journal_fd, offset)
            if found is None:
                return None
            ref = JobRef(self.journal, offset, found.name, found.content)
            mark(ref)
            _write_cursor(self._cursor_fd, boot, offset + found.end)
            return ref

    def refile(self, boot: str) -> list[str]:
        """After a restart of the machine, make every job of the journal that has no job
        file a file (durably), and move the cursor to its end; the names made. A journal
        handed out in this boot, or never, is left as it is."""
        with self._locked():
            cursor_boot, _ = _read_cursor(self._cursor_fd)
            if cursor_boot in (None, boot) or not self.journal.exists():
                return []
            data = _read_all(self._journal_fd)
            try:
                _, start = read_header(data)
            except ValueError:
                return []  # not a journal
            made = []
            for record in read_records(data, start):
                path = self.journal.parent / record.name
                if not path.exists():
                    write_file(path, record.content, sync=True)
                    made.append(record.name)
            _write_cursor(self._cursor_fd, boot, len(data))
            return made

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._cursor_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._cursor_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the journal and its cursor."""
        os.close(self._journal_fd)
        os.close(self._cursor_fd)


def waiting(journal: Path, boot: str | None) -> list[tuple[str, bytes]]:
    """The jobs of ``journal`` not handed out yet: (job path, job file bytes)."""
    try:
        data = journal.read_bytes()
        _, start = read_header(data)
    except (FileNotFoundError, ValueError):
        return []
    cursor_boot, offset = _read_cursor_at(cursor_of(journal))
    if cursor_boot not in (None, boot):  # before a refile: all but those with a file
        return [
            (record.name, record.content)
            for record in read_records(data, start)
            if not (journal.parent / record.name).exists()
        ]
    return [
        (record.name, record.content)
        for record in read_records(data, offset if cursor_boot else start)
    ]


def record_at(journal: Path, offset: int, boot: str) -> JobRef | None:
    """The job whose record starts at ``offset`` in ``journal``, if it was handed out in this
    boot; None if it was not (it will be), or the journal is gone."""
    cursor_boot, handed_to = _read_cursor_at(cursor_of(journal))
    if cursor_boot != boot or offset >= handed_to:
        return None
    try:
        with _opened(journal) as journal_fd:
            record = _record_at(journal_fd, offset)
    except FileNotFoundError:
        return None
    return None if record is None else JobRef(journal, offset, record.name, record.content)


def retire(journal: Path, boot: str | None, pinned: Callable[[], set[str]]) -> bool:
    """Delete ``journal`` if its writer is gone, all its records were handed out in this
    boot, and no running mark names it (``pinned()``: the names the marks hold)."""
    try:
        with _opened(journal) as journal_fd:
            try:
                fcntl.flock(journal_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its writer is alive
            with _locked_cursor(journal) as cursor:
                data = _read_all(journal_fd)
                try:
                    _, start = read_header(data)
                except ValueError:
                    return False  # not ours to touch
                cursor_boot, offset = _read_cursor(cursor)
                if cursor_boot != boot or read_records(data, max(offset, start)):
                    return False
                if journal.name in pinned():
                    return False
                journal.unlink()
                cursor_of(journal).unlink(missing_ok=True)
                sync_directory(journal.parent)
                return True
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked_cursor(journal: Path) -> Iterator[int]:
    fd = os.open(cursor_of(journal), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_cursor(fd: int) -> tuple[str | None, int]:
    """The boot id and offset a journal was handed out to; (None, 0) if it never was."""
    return _parse_cursor(os.pread(fd, 256, 0))


def _read_cursor_at(path: Path) -> tuple[str | None, int]:
    try:
        return _parse_cursor(path.read_bytes())
    except FileNotFoundError:
        return None, 0


def _parse_cursor(data: bytes) -> tuple[str | None, int]:
    with contextlib.suppress(ValueError):
        boot, offset = data.decode().split()
        return boot, int(offset)
    return None, 0


def _write_cursor(fd: int, boot: str, offset: int) -> None:
    text = f"{boot} {offset:020d}".encode()
    os.pwrite(fd, text, 0)
    os.ftruncate(fd, len(text))  # a no-op but after a restart: boot ids have one length
