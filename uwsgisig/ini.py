"""uWSGI ini files read as ``uwsgisig run`` options (``uwsgisig run --ini FILE``).

The ``[uwsgi]`` section (or ``FILE:SECTION``) is read as uWSGI reads it: one
``key = value`` per line, a key given several times counts several times,
lines that start with ``;`` or ``#`` are comments, and uWSGI's magic
variables are expanded: ``%d`` (the file's directory, with a trailing
slash), ``%p`` (its absolute path), ``%s`` (its name), ``%n`` (its name
without the extension), ``%e`` (the extension), ``%(key)`` (a key set
above; another ``%(...)``, such as a log format's, stays as it is) and ``%%``.

Each option this runtime has becomes the matching command-line option; the
ones it has no use for (sockets, users, harakiri...) are listed once in a
warning, never silently dropped. Options on the command line come after the
file's, so they win.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import attrs

__all__ = ["IniError", "IniOptions", "read_ini"]


class IniError(ValueError):
    """The ini file cannot be read as options: the message names the line or the value."""


@attrs.frozen
class IniOptions:
    """What an ini file says: the APP, the options, a command, what it ignores."""

    app: str | None
    argv: list[str]
    command: list[str]
    ignored: list[str]


_BOOLEAN_TRUE = {"", "1", "true", "yes", "on", "y", "t"}
_BOOLEAN_FALSE = {"0", "false", "no", "off", "n", "f"}

# uWSGI option -> (our option, kind). Kinds: value, int, number, flag, pair.
OPTIONS: dict[str, tuple[str, str]] = {
    "processes": ("--workers", "int"),
    "workers": ("--workers", "int"),
    "p": ("--workers", "int"),
    "mules": ("--mules", "int"),
    "locks": ("--locks", "int"),
    "cache": ("--cache", "int"),
    "cache2": ("--cache2", "value"),
    "harakiri": ("--harakiri", "number"),
    "farm": ("--farm", "value"),
    "spooler": ("--spooler", "value"),
    "spooler-frequency": ("--spooler-frequency", "number"),
    "spooler-processes": ("--spooler-processes", "int"),
    "spooler-ordered": ("--spooler-ordered", "flag"),
    "pidfile": ("--pidfile", "value"),
    "safe-pidfile": ("--pidfile", "value"),
    "master-fifo": ("--master-fifo", "value"),
    "stats": ("--stats", "value"),
    "stats-server": ("--stats", "value"),
    "stats-http": ("--stats-http", "flag"),
    "touch-reload": ("--touch-reload", "value"),
    "touch-workers-reload": ("--touch-workers-reload", "value"),
    "touch-mules-reload": ("--touch-mules-reload", "value"),
    "touch-chain-reload": ("--touch-chain-reload", "value"),
    "touch-logreopen": ("--touch-logreopen", "value"),
    "touch-logrotate": ("--touch-logrotate", "value"),
    "timer": ("--timer", "pair"),
    "signal-timer": ("--timer", "pair"),
    "rbtimer": ("--rbtimer", "pair"),
    "signal-rbtimer": ("--rbtimer", "pair"),
    "pythonpath": ("--pythonpath", "value"),
    "python-path": ("--pythonpath", "value"),
    "pp": ("--pythonpath", "value"),
    "chdir": ("--chdir", "value"),
    "logto": ("--log-file", "value"),
    "die-on-term": ("--die-on-term", "flag"),
    # Ours: uWSGI 2.0 has no Redis cluster.
    "cluster": ("--cluster", "value"),
    "cluster-name": ("--cluster-name", "value"),
    "cluster-node": ("--cluster-node", "value"),
}
# Known and meaningless here, because the runtime always does this: not worth a warning.
ALWAYS = {"master", "m", "enable-threads", "vacuum"}
# Where the APP comes from: a module (``pkg.mod`` or ``pkg.mod:callable``) or a file.
APP_KEYS = {
    "module": "module",
    "wsgi": "module",
    "w": "module",
    "wsgi-file": "file",
    "file": "file",
}

_LINE = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*=\s?(.*?)\s*$")
_MAGIC = re.compile(r"%(\([A-Za-z0-9_.\-]+\)|.)")
_TRAILING_COMMENT = re.compile(r"\s+[#;].*$")


def read_ini(spec: str) -> IniOptions:
    """Read ``FILE`` or ``FILE:SECTION`` (section ``uwsgi`` by default) as options."""
    path, section = _split_spec(spec)
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise IniError(f"cannot read ini file {path!r}: {exc.strerror}") from None
    pairs = list(_section(lines, section, path))
    if not pairs:
        raise IniError(f"ini file {path!r} has no [{section}] section (or it is empty)")
    return _options(pairs, path)


def _split_spec(spec: str) -> tuple[str, str]:
    path, sep, section = spec.rpartition(":")
    if sep and path and not os.path.exists(spec):
        return path, section
    return spec, "uwsgi"


def _section(lines: list[str], wanted: str, path: str) -> Iterable[tuple[int, str, str]]:
    current = None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            continue
        if current != wanted:
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise IniError(f"{path}, line {number}: not a 'key = value' line: {line.strip()!r}")
        yield number, match.group(1).lower(), match.group(2)


def _options(pairs: list[tuple[int, str, str]], path: str) -> IniOptions:
    absolute = os.path.abspath(path)
    name = os.path.basename(absolute)
    magic = {
        "d": os.path.dirname(absolute) + os.sep,
        "p": absolute,
        "s": name,
        "n": os.path.splitext(name)[0],
        "e": os.path.splitext(name)[1].lstrip("."),
        "%": "%",
    }
    seen: dict[str, str] = {}
    app: str | None = None
    argv: list[str] = []
    command: list[str] = []
    ignored: list[str] = []
    plain_mules = 0
    for number, key, raw in pairs:
        value = _expand(raw, magic, seen)
        seen[key] = value
        where = f"{path}, line {number}: {key} = {raw!r}"
        if key in APP_KEYS:
            app = value.partition(":")[0] if APP_KEYS[key] == "module" else value
        elif key == "mule":
            # `mule = true` (or empty) is a plain mule, anything else its loop. The
            # plain ones take the first ids, as with --mules N --mule LOOP.
            if value.lower() in _BOOLEAN_TRUE:
                plain_mules += 1
            else:
                argv += ["--mule", value]
        elif key == "attach-daemon":
            if command:
                ignored.append(f"{key} (one command per runtime: the first is kept)")
            else:
                command = ["/bin/sh", "-c", value]
        elif key == "env":
            name_, sep, env_value = value.partition("=")
            if not sep or not name_:
                raise IniError(f"{where}: env takes NAME=VALUE")
            os.environ[name_] = env_value
        elif key in OPTIONS:
            argv += _option(*OPTIONS[key], value, where)
        elif key not in ALWAYS and key not in ignored:
            ignored.append(key)
    if plain_mules:
        argv += ["--mules", str(plain_mules)]
    return IniOptions(app, argv, command, ignored)


def _expand(raw: str, magic: dict[str, str], seen: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        token = match.group(1)
        if token.startswith("("):
            # %(ltime) in a log-format is the logger's, not an option: it stays.
            return seen.get(token[1:-1].lower(), match.group(0))
        return magic.get(token, match.group(0))  # an unknown %x stays, as in uWSGI

    return _MAGIC.sub(substitute, raw)


def _option(flag: str, kind: str, value: str, where: str) -> list[str]:
    if kind == "flag":
        lowered = value.lower()
        if lowered in _BOOLEAN_TRUE:
            return [flag]
        if lowered in _BOOLEAN_FALSE:
            return []
        raise IniError(f"{where}: not a boolean (true, false, 1, 0...)")
    if kind == "value":
        return [flag, value]
    number = _TRAILING_COMMENT.sub("", value)  # uWSGI reads a number with atoi()
    if kind == "int":
        if not re.fullmatch(r"\d+", number):
            raise IniError(f"{where}: not a whole number")
        return [flag, number]
    if kind == "number":
        try:
            float(number)
        except ValueError:
            raise IniError(f"{where}: not a number") from None
        return [flag, number]
    parts = number.split()  # a pair: SIGNAL SECONDS
    if len(parts) != 2:
        raise IniError(f"{where}: give SIGNAL SECONDS")
    return [flag, *parts]
