"""Cron: ``uwsgi.add_cron(signal, minute, hour, day, month, weekday)`` and crontab strings.

A `CronSpec` holds, per field, the set of values it allows. Both spellings
map onto it:

- uWSGI's: each field is one int; ``-1`` means any and ``-N`` means "every
  N", which uWSGI's C code (``uwsgi_cron_task_needs_execution``) tests as
  ``value % N == 0`` on the ``struct tm`` field, after turning ``tm_mon``
  into 1-12. So ``minute=-15`` is 0, 15, 30, 45; ``day=-2`` is 2, 4, ...,
  30; ``month=-3`` is 3, 6, 9, 12; ``weekday=-2`` is Sunday, Tuesday,
  Thursday, Saturday. Weekday 7 is Sunday, as in crontab.
- crontab's five fields ``minute hour day month weekday`` with ``*``,
  numbers, ``a-b``, ``*/n``, ``a-b/n``, lists, ``jan``-``dec``,
  ``sun``-``sat`` and the ``@hourly``-style aliases. A field may also be a
  lone negative number, as in uWSGI's ``--cron`` option (``-5 -1 -1 -1 -1``).

Day and weekday: if both are restricted, a day matching either one matches
(POSIX). A field is unrestricted when it is uWSGI's ``-N`` or, in a crontab
string, starts with ``*`` (so ``*/2`` is unrestricted) — uWSGI's C code and
vixie cron/cronie draw the line at the same place; an unrestricted field is
then ANDed like the others.

`CronTable` decides when an entry fires. Rules, all for naive local time:

- **uWSGI's rule.** An entry fires when the minute of ``now`` matches its
  spec *and* at least 60 s have passed since it last fired; an entry that
  never fired fires at the first check in a matching minute. This is what
  uWSGI's master does, about once a second, in ``uwsgi_manage_signal_cron``
  (core/cron.c)::

      if (uwsgi_cron_task_needs_execution(...) == 1) {
          if (now - ucron->last_job >= 60) {
              uwsgi_route_signal(ucron->sig);
              ucron->last_job = now;
          }
      }

  So a cron of all ``-1`` fires at start, then every 60 s from there (not
  at minute boundaries); ``minute=M`` fires at HH:MM:00, the first check in
  minute M, or at start if started during minute M. uWSGI compares whole
  seconds (``time_t``); we compare the exact times.
- **When to look.** `CronTable.next_check` is the earliest moment an entry
  may fire: the next minute boundary, or an entry's last fire + 60 s when
  that comes sooner. The master sleeps until then instead of polling.
- **Forward jump** (clock set forward, suspend, a stalled loop): an entry
  fires once, at the first check in a matching minute; the skipped minutes
  never fire (no burst).
- **Backward jump**: ``now - last fire`` is negative, so the entry does not
  fire again until the clock has passed its last fire + 60 s (a DST
  fall-back hour does not re-run jobs; uWSGI, which counts on ``time()``,
  does re-run them) — unless the clock went back by more than 3 hours, which
  is taken as a clock reset: the entry counts as never fired and evaluation
  restarts from the new time.

We parse crontab ourselves: ~80 lines, and we need uWSGI's ``-N`` and the
restricted/unrestricted day rule mapped onto the same sets, which croniter
(a whole next-fire-time iterator) does not give us.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Final, cast

import attrs

from ...errors import ScheduleError, check_signal_number

__all__ = [
    "BACKWARD_RESET",
    "FIRE_INTERVAL",
    "CronSpec",
    "CronTable",
    "MinuteKey",
    "local_now",
    "minute_key",
    "seconds_until_next_minute",
]

MinuteKey = tuple[int, int, int, int, int]
"""A wall-clock minute as ``(year, month, day, hour, minute)``."""

BACKWARD_RESET: Final = timedelta(hours=3)
"""A backward clock jump larger than this restarts evaluation from the new time."""


@attrs.frozen
class _Field:
    name: str
    low: int
    high: int  # highest value accepted in input (weekday: 7, stored as 0)
    names: tuple[str, ...] = ()  # names for low, low+1, ...

    @property
    def values(self) -> frozenset[int]:
        """Every value the field can hold once normalized."""
        return frozenset(_normalize(self, v) for v in range(self.low, self.high + 1))


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DAY = _Field("day", 1, 31)
_MONTH = _Field(
    "month",
    1,
    12,
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
)
_WEEKDAY = _Field("weekday", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
_FIELDS: Final = (_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY)

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_ITEM = re.compile(
    r"(?P<base>\*|(?P<a>[0-9A-Za-z]+)(?:-(?P<b>[0-9A-Za-z]+))?)(?:/(?P<step>[0-9A-Za-z]+))?"
)


def _normalize(field: _Field, value: int) -> int:
    # Weekday 7 is Sunday, as in crontab and uWSGI.
    return 0 if field is _WEEKDAY and value == 7 else value


def _every(field: _Field, n: int) -> frozenset[int]:
    """uWSGI's ``-N``: the values with ``value % N == 0``."""
    return frozenset(v for v in field.values if v % n == 0)


def _stepped(field: _Field, low: int, high: int, step: int) -> frozenset[int]:
    return frozenset(_normalize(field, v) for v in range(low, high + 1, step))


def _uwsgi_value(field: _Field, value: object) -> tuple[frozenset[int], bool]:
    """Map one ``add_cron`` argument to (allowed values, restricted)."""
    if value is None:
        value = -1
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not -field.high <= value <= field.high
    ):
        raise _uwsgi_value_error(field, value)
    if value < 0:
        return _every(field, -value), False
    if value < field.low:
        raise _uwsgi_value_error(field, value)
    return frozenset({_normalize(field, value)}), True


def _uwsgi_value_error(field: _Field, value: object) -> ScheduleError:
    return ScheduleError(
        f"invalid cron {field.name} {value!r}: must be an int from {field.low} to "
        f"{field.high}, -1 (or None) for any, or -N for every N (N from 2 to {field.high})"
    )


def _parse_number(field: _Field, word: str) -> int:
    if word.isdigit():
        value = int(word)
    elif word.lower() in field.names:
        value = field.low + field.names.index(word.lower())
    else:
        raise _FieldError(f"{word!r} is not a number" + _names_hint(field))
    if not field.low <= value <= field.high:
        raise _FieldError(f"{value} is out of range {field.low}-{field.high}")
    return value


def _names_hint(field: _Field) -> str:
    return f" or a name ({field.names[0]}-{field.names[-1]})" if field.names else ""


class _FieldError(Exception):
    """Why one crontab field is invalid; turned into a `ScheduleError` with context."""


def _parse_item(field: _Field, item: str) -> frozenset[int]:
    match = _ITEM.fullmatch(item)
    if match is None:
        raise _FieldError(f"cannot parse {item!r}")
    step = 1
    if match["step"] is not None:
        if not match["step"].isdigit() or int(match["step"]) < 1:
            raise _FieldError(f"step {match['step']!r} must be an int >= 1")
        step = int(match["step"])
    if match["base"] == "*":
        return _stepped(field, field.low, field.high, step)
    low = _parse_number(field, match["a"])
    if match["b"] is None:
        if match["step"] is not None:
            raise _FieldError(f"a step needs a range: write {low}-{field.high}/{step} or */{step}")
        return frozenset({_normalize(field, low)})
    high = _parse_number(field, match["b"])
    if low > high:
        raise _FieldError(f"range {low}-{high} is backwards")
    return _stepped(field, low, high, step)


def _parse_field(field: _Field, token: str) -> tuple[frozenset[int], bool]:
    """Map one crontab field to (allowed values, restricted)."""
    if re.fullmatch(r"-\d+", token):
        return _uwsgi_value(field, int(token))
    values: frozenset[int] = frozenset()
    for item in token.split(","):
        values |= _parse_item(field, item)
    return values, not token.startswith("*")


def _star_spelling(field: _Field, values: frozenset[int], *, uwsgi: bool = True) -> str | None:
    """Return the unrestricted spelling of ``values``: ``*``, ``*/n`` or uWSGI's ``-N``."""
    if values == field.values:
        return "*"
    for n in range(2, field.high + 1):
        if values == _stepped(field, field.low, field.high, n):
            return f"*/{n}"
        if uwsgi and values == _every(field, n):
            return f"-{n}"
    return None


def _uwsgi_spelling(field: _Field, values: frozenset[int]) -> int | None:
    """One ``add_cron`` argument for ``values``: the value itself, -1 or -N; None if none fits."""
    if values == field.values:
        return -1
    if len(values) == 1:
        return next(iter(values))
    for n in range(2, field.high + 1):
        if values == _every(field, n):
            return -n
    return None


def _render(values: frozenset[int]) -> str:
    """Spell a set as a crontab list: runs become ``a-b``, progressions ``a-b/n``."""
    ordered = sorted(values)
    if len(ordered) >= 3:
        step = ordered[1] - ordered[0]
        if step > 1 and ordered == list(range(ordered[0], ordered[-1] + 1, step)):
            return f"{ordered[0]}-{ordered[-1]}/{step}"
    parts: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(parts)


def _render_field(field: _Field, values: frozenset[int], restricted: bool | None) -> str:
    """Spell one field; ``restricted`` is None for the fields without that notion."""
    if restricted is None:
        return _star_spelling(field, values, uwsgi=False) or _render(values)
    if not restricted:
        # Always found: CronSpec.__attrs_post_init__ checked it.
        return _star_spelling(field, values) or _render(values)
    if values == field.values:
        # Spelled out, because "*" would read back as unrestricted.
        return f"{field.low}-{6 if field is _WEEKDAY else field.high}"
    return _render(values)


def _is_field_value(field: _Field, value: object) -> bool:
    return (
        not isinstance(value, bool) and isinstance(value, int) and field.low <= value <= field.high
    )


def _values_converter(field: _Field) -> Callable[[Iterable[int]], frozenset[int]]:
    def convert(values: Iterable[int]) -> frozenset[int]:
        try:
            result = frozenset(values)
        except TypeError:
            raise ScheduleError(
                f"invalid cron {field.name} values {values!r}: must be a set of ints"
            ) from None
        if not result or not all(_is_field_value(field, v) for v in result):
            raise ScheduleError(
                f"invalid cron {field.name} values {sorted(result, key=repr)!r}: need at least "
                f"one int from {field.low} to {field.high}"
            )
        return frozenset(_normalize(field, v) for v in result)

    return convert


def _restricted_default(attribute: str, field: _Field) -> attrs.Factory:
    return attrs.Factory(lambda self: getattr(self, attribute) != field.values, takes_self=True)


@attrs.frozen
class CronSpec:
    """When a cron entry fires: the allowed values of each field.

    Build one with `CronSpec.from_uwsgi` or `CronSpec.parse`. Weekdays are
    0-6, 0 = Sunday.

    Attributes:
        minutes: Allowed minutes, 0-59.
        hours: Allowed hours, 0-23.
        days: Allowed days of the month, 1-31.
        months: Allowed months, 1-12.
        weekdays: Allowed weekdays, 0-6 (7 is accepted and stored as 0).
        day_restricted: Whether the day field was given as a restriction
            (see the module docstring); defaults to "not every day".
        weekday_restricted: The same for the weekday field.
    """

    minutes: frozenset[int] = attrs.field(converter=_values_converter(_MINUTE))
    hours: frozenset[int] = attrs.field(converter=_values_converter(_HOUR))
    days: frozenset[int] = attrs.field(converter=_values_converter(_DAY))
    months: frozenset[int] = attrs.field(converter=_values_converter(_MONTH))
    weekdays: frozenset[int] = attrs.field(converter=_values_converter(_WEEKDAY))
    day_restricted: bool = attrs.field(
        default=_restricted_default("days", _DAY), validator=attrs.validators.instance_of(bool)
    )
    weekday_restricted: bool = attrs.field(
        default=_restricted_default("weekdays", _WEEKDAY),
        validator=attrs.validators.instance_of(bool),
    )

    def __attrs_post_init__(self) -> None:
        # Keeps str() exact: an unrestricted day/weekday must have a crontab spelling.
        for field, values, restricted in (
            (_DAY, self.days, self.day_restricted),
            (_WEEKDAY, self.weekdays, self.weekday_restricted),
        ):
            if not restricted and _star_spelling(field, values) is None:
                raise ScheduleError(
                    f"invalid cron {field.name} values {sorted(values)}: an unrestricted "
                    f"{field.name} field must be every value, */n or -N"
                )

    @classmethod
    def from_uwsgi(
        cls,
        minute: int | None = -1,
        hour: int | None = -1,
        day: int | None = -1,
        month: int | None = -1,
        weekday: int | None = -1,
    ) -> CronSpec:
        """Build a spec from ``uwsgi.add_cron``'s arguments; None means -1 (any)."""
        parsed = [
            _uwsgi_value(f, v)
            for f, v in zip(_FIELDS, (minute, hour, day, month, weekday), strict=True)
        ]
        return cls._from_fields(parsed)

    @classmethod
    def parse(cls, text: str) -> CronSpec:
        """Build a spec from a 5-field crontab string or an ``@hourly``-style alias."""
        if not isinstance(text, str):
            raise ScheduleError(f"invalid crontab {text!r}: must be a string")
        spec = text.strip()
        if spec.startswith("@"):
            if spec.lower() not in _ALIASES:
                raise ScheduleError(
                    f"invalid crontab {text!r}: unknown alias, use one of {', '.join(_ALIASES)}"
                )
            spec = _ALIASES[spec.lower()]
        tokens = spec.split()
        if len(tokens) != len(_FIELDS):
            raise ScheduleError(
                f"invalid crontab {text!r}: need 5 fields (minute hour day month weekday), "
                f"got {len(tokens)}"
            )
        parsed = []
        for field, token in zip(_FIELDS, tokens, strict=True):
            try:
                parsed.append(_parse_field(field, token))
            except _FieldError as exc:
                raise ScheduleError(
                    f"invalid crontab {text!r}: {field.name} field {token!r}: {exc}"
                ) from None
            except ScheduleError as exc:
                raise ScheduleError(f"invalid crontab {text!r}: {exc}") from None
        return cls._from_fields(parsed)

    @classmethod
    def _from_fields(cls, parsed: list[tuple[frozenset[int], bool]]) -> CronSpec:
        (minutes, _), (hours, _), (days, day_r), (months, _), (weekdays, weekday_r) = parsed
        return cls(minutes, hours, days, months, weekdays, day_r, weekday_r)

    def to_uwsgi(self) -> tuple[int, int, int, int, int] | None:
        """The ``uwsgi.add_cron`` fields that mean this spec, or None when they cannot say it.

        uWSGI's fields hold one value, -1 (any) or -N (every N): lists, ranges
        and ``*/n`` steps other than those have no uWSGI spelling.
        """
        fields = tuple(
            _uwsgi_spelling(field, values)
            for field, values in zip(
                _FIELDS,
                (self.minutes, self.hours, self.days, self.months, self.weekdays),
                strict=True,
            )
        )
        if None in fields:
            return None
        spelled = cast("tuple[int, int, int, int, int]", fields)
        # The round trip also checks day and weekday restriction, which uWSGI ORs.
        return spelled if CronSpec.from_uwsgi(*spelled) == self else None

    def matches(self, when: datetime) -> bool:
        """Whether the wall-clock minute of ``when`` (naive local time) matches."""
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        day_ok = when.day in self.days
        weekday_ok = when.isoweekday() % 7 in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_match(
        self, after: datetime, *, within: timedelta = timedelta(days=2)
    ) -> datetime | None:
        """The first whole minute after ``after`` that matches, if one comes ``within``."""
        when = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = after + within
        while when <= end:
            if self.matches(when):
                return when
            when += timedelta(minutes=1)
        return None

    def __str__(self) -> str:
        """The crontab spelling; `CronSpec.parse` of it gives an equal spec."""
        fields = (
            _render_field(_MINUTE, self.minutes, None),
            _render_field(_HOUR, self.hours, None),
            _render_field(_DAY, self.days, self.day_restricted),
            _render_field(_MONTH, self.months, None),
            _render_field(_WEEKDAY, self.weekdays, self.weekday_restricted),
        )
        return " ".join(fields)


def minute_key(when: datetime) -> MinuteKey:
    """Return the wall-clock minute of ``when`` as ``(year, month, day, hour, minute)``."""
    return (when.year, when.month, when.day, when.hour, when.minute)


def seconds_until_next_minute(now: datetime) -> float:
    """Seconds from ``now`` to the next HH:MM:00, in (0, 60]."""
    return 60.0 - now.second - now.microsecond / 1_000_000


def local_now() -> datetime:
    """The default clock: the current naive local time."""
    return datetime.now()


@attrs.define
class _Entry:
    signum: int
    spec: CronSpec
    last_fired: datetime | None = None  # uWSGI's last_job


FIRE_INTERVAL: Final = timedelta(seconds=60)
"""An entry fires again only this long after its last fire (uWSGI's ``>= 60``)."""


class CronTable:
    """Cron entries and uWSGI's firing rule (see the module docstring).

    The table reads no clock: `due` and `next_check` take ``now``, a naive
    local datetime.

    Args:
        backward_reset: A backward clock jump larger than this restarts
            evaluation from the new time; after smaller ones, an entry waits
            for the clock to pass its last fire + 60 s.
    """

    def __init__(self, *, backward_reset: timedelta = BACKWARD_RESET) -> None:
        self._entries: list[_Entry] = []
        self._backward_reset = backward_reset

    def __len__(self) -> int:
        return len(self._entries)

    def specs(self) -> list[tuple[int, CronSpec]]:
        """``(signum, spec)`` of every entry, in the order they were added."""
        return [(entry.signum, entry.spec) for entry in self._entries]

    def add(self, signum: int, spec: CronSpec) -> None:
        """Add an entry raising ``signum``; it is first evaluated by the next `due` call."""
        if not isinstance(spec, CronSpec):
            raise ScheduleError(f"invalid cron spec {spec!r}: must be a CronSpec")
        self._entries.append(_Entry(check_signal_number(signum), spec))

    def due(self, now: datetime) -> list[int]:
        """Return the signals to raise at ``now``, in the order added, and record the fires.

        An entry fires when the minute of ``now`` matches and it has not fired
        in the last 60 s; see the module docstring for clock jumps.
        """
        signals: list[int] = []
        for entry in self._entries:
            last = entry.last_fired
            if last is not None and last - now > self._backward_reset:
                last = entry.last_fired = None  # a clock reset
            if not entry.spec.matches(now):
                continue
            if last is None or now - last >= FIRE_INTERVAL:
                entry.last_fired = now
                signals.append(entry.signum)
        return signals

    def next_check(self, now: datetime) -> datetime | None:
        """When `due` should be called next, after a call at ``now``; None for no entries.

        The earliest of the next minute boundary and, for each entry that
        fired, its last fire + 60 s when that is later than ``now``. No entry
        can fire before then.
        """
        if not self._entries:
            return None
        result = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for entry in self._entries:
            if entry.last_fired is not None:
                again = entry.last_fired + FIRE_INTERVAL
                if now < again < result:
                    result = again
        return result
