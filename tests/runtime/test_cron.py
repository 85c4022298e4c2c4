"""Cron: uWSGI's add_cron fields, crontab strings, matching, uWSGI's firing rule, wake-ups."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uwsgisig.errors import SignalNumberError
from uwsgisig.runtime.schedule.cron import (
    BACKWARD_RESET,
    CronSpec,
    CronTable,
    local_now,
    minute_key,
    seconds_until_next_minute,
)
from uwsgisig.runtime.schedule.events import CRON_MARGIN, CronEvent, EventSources
from uwsgisig.runtime.schedule.timers import ScheduleError

pytestmark = pytest.mark.timeout(30)

# 2024-01-01 is a Monday; 2024-01-07 a Sunday.
MON = datetime(2024, 1, 8, 12, 0)
TUE = datetime(2024, 1, 2, 12, 0)
FRI_5 = datetime(2024, 1, 5, 0, 0)
FRI_12 = datetime(2024, 1, 12, 0, 0)
SAT_6 = datetime(2024, 1, 6, 0, 0)
SAT_13 = datetime(2024, 1, 13, 0, 0)
SUN = datetime(2024, 1, 7, 12, 0)


def at(hour: int, minute: int, second: int = 0, micro: int = 0, day: int = 8) -> datetime:
    return datetime(2024, 1, day, hour, minute, second, micro)


# (add_cron fields, datetime, expected) ----------------------------------------

UWSGI_CASES = [
    ({}, MON, True),
    ({}, datetime(1999, 12, 31, 23, 59), True),
    ({"minute": None, "hour": None, "day": None, "month": None, "weekday": None}, SUN, True),
    ({"minute": 30}, at(12, 30), True),
    ({"minute": 30}, at(12, 31), False),
    ({"minute": 0, "hour": 0}, at(0, 0), True),
    ({"minute": 0, "hour": 0}, at(12, 0), False),
    # -N is "value % N == 0" on the struct tm field, as uWSGI's C code does.
    ({"minute": -15}, at(12, 0), True),
    ({"minute": -15}, at(12, 45), True),
    ({"minute": -15}, at(12, 40), False),
    ({"hour": -2}, at(14, 7), True),
    ({"hour": -2}, at(13, 7), False),
    ({"day": -2}, TUE, True),  # the 2nd
    ({"day": -2}, datetime(2024, 1, 3, 12, 0), False),
    ({"day": -2}, datetime(2024, 1, 1, 12, 0), False),  # 1 % 2 != 0: not "from the 1st"
    ({"month": 1}, MON, True),  # months are 1-12 (uWSGI adds 1 to tm_mon)
    ({"month": 2}, MON, False),
    ({"month": -3}, datetime(2024, 3, 10, 1, 1), True),
    ({"month": -3}, datetime(2024, 12, 14, 1, 1), True),
    ({"month": -3}, datetime(2024, 1, 10, 1, 1), False),
    ({"weekday": 0}, SUN, True),  # 0 = Sunday
    ({"weekday": 0}, MON, False),
    ({"weekday": 7}, SUN, True),  # 7 = Sunday too
    ({"weekday": 7}, SAT_6, False),
    ({"weekday": 1}, MON, True),
    ({"weekday": 6}, SAT_6, True),
    ({"weekday": -2}, SUN, True),  # 0 % 2
    ({"weekday": -2}, TUE, True),
    ({"weekday": -2}, MON, False),
    # Both day and weekday given: either matches (POSIX, and uWSGI's C code).
    ({"day": 13, "weekday": 5}, SAT_13, True),
    ({"day": 13, "weekday": 5}, FRI_5, True),
    ({"day": 13, "weekday": 5}, SAT_6, False),
    # Only one restricted: only it counts.
    ({"day": 13}, FRI_5, False),
    ({"day": 13}, SAT_13, True),
    ({"weekday": 5}, FRI_5, True),
    ({"weekday": 5}, SAT_13, False),
    # -N is unrestricted: ANDed with a given weekday, as uWSGI does.
    ({"day": -2, "weekday": 5}, FRI_12, True),
    ({"day": -2, "weekday": 5}, FRI_5, False),
    ({"day": -2, "weekday": 5}, TUE, False),
    ({"day": 12, "weekday": -2}, FRI_12, False),  # Friday is 5: 5 % 2 != 0
    ({"day": 2, "weekday": -2}, TUE, True),
]


@pytest.mark.parametrize(("fields", "when", "expected"), UWSGI_CASES)
def test_uwsgi_fields_match_like_uwsgi(fields: dict, when: datetime, expected: bool) -> None:
    assert CronSpec.from_uwsgi(**fields).matches(when) is expected


# (crontab string, datetime, expected) -------------------------------------------

CRONTAB_CASES = [
    ("* * * * *", MON, True),
    ("*/15 * * * *", at(12, 45), True),
    ("*/15 * * * *", at(12, 50), False),
    ("1-10/3 * * * *", at(12, 7), True),
    ("1-10/3 * * * *", at(12, 8), False),
    ("5,10,15-17 * * * *", at(12, 16), True),
    ("5,10,15-17 * * * *", at(12, 14), False),
    ("0 9-17 * * 1-5", at(9, 0), True),
    ("0 9-17 * * 1-5", at(18, 0), False),
    ("0 9-17 * * 1-5", SUN.replace(hour=9), False),
    ("30 4 1,15 * *", datetime(2024, 2, 15, 4, 30), True),
    ("30 4 1,15 * *", datetime(2024, 2, 16, 4, 30), False),
    ("0 0 13 * 5", SAT_13, True),  # both restricted: OR
    ("0 0 13 * 5", FRI_5, True),
    ("0 0 13 * 5", SAT_6, False),
    ("0 0 */2 * 5", FRI_5, True),  # "*/2" is unrestricted (vixie cron): AND
    ("0 0 */2 * 5", FRI_12, False),
    ("0 0 */2 * 5", datetime(2024, 1, 3, 0, 0), False),
    ("0 0 1-31 * 1", SAT_6, True),  # "1-31" is restricted: OR makes every day match
    ("0 0 * * 7", SUN.replace(hour=0), True),
    ("0 0 * * 5-7", SUN.replace(hour=0), True),
    ("0 0 * * 5-7", SAT_6, True),
    ("0 0 * * 5-7", MON.replace(hour=0), False),
    ("0 0 * * */2", SUN.replace(hour=0), True),
    ("0 0 * * */2", MON.replace(hour=0), False),
    ("0 0 1 jan *", datetime(2024, 1, 1, 0, 0), True),
    ("0 0 * * MON", MON.replace(hour=0), True),
    ("0 0 * * mon-fri", SAT_6, False),
    ("0 0 * feb-mar *", datetime(2024, 3, 1, 0, 0), True),
    ("-5 -1 -2 -1 -1", TUE.replace(minute=35), True),  # uWSGI's --cron form
    ("-5 -1 -2 -1 -1", TUE.replace(minute=36), False),
    ("@hourly", at(12, 0), True),
    ("@hourly", at(12, 1), False),
    ("@daily", at(0, 0), True),
    ("@daily", at(1, 0), False),
    ("@midnight", at(0, 0), True),
    ("@weekly", SUN.replace(hour=0), True),
    ("@weekly", MON.replace(hour=0), False),
    ("@monthly", datetime(2024, 5, 1, 0, 0), True),
    ("@monthly", datetime(2024, 5, 2, 0, 0), False),
    ("@yearly", datetime(2024, 1, 1, 0, 0), True),
    ("@annually", datetime(2024, 2, 1, 0, 0), False),
    ("@DAILY", at(0, 0), True),
    ("  0   0 * * *  ", at(0, 0), True),
]


@pytest.mark.parametrize(("text", "when", "expected"), CRONTAB_CASES)
def test_crontab_strings_match_like_cron(text: str, when: datetime, expected: bool) -> None:
    assert CronSpec.parse(text).matches(when) is expected


def test_seconds_do_not_matter_for_a_match() -> None:
    spec = CronSpec.from_uwsgi(minute=30)

    assert spec.matches(at(12, 30, 59, 999_999))


def test_uwsgi_every_n_equals_crontab_step_for_zero_based_fields() -> None:
    assert CronSpec.from_uwsgi(minute=-15, hour=-2, weekday=-3) == CronSpec.parse(
        "*/15 */2 * * */3"
    )


def test_uwsgi_every_n_days_counts_from_zero_unlike_crontab_step() -> None:
    assert CronSpec.from_uwsgi(day=-2).days == frozenset(range(2, 32, 2))
    assert CronSpec.parse("* * */2 * *").days == frozenset(range(1, 32, 2))


def test_weekday_7_is_stored_as_sunday() -> None:
    assert CronSpec.from_uwsgi(weekday=7) == CronSpec.from_uwsgi(weekday=0)
    assert CronSpec.parse("* * * * 7").weekdays == frozenset({0})


def test_restricted_flags_follow_the_spelling() -> None:
    spec = CronSpec.parse("0 0 1-31 * */2")

    assert (spec.day_restricted, spec.weekday_restricted) == (True, False)
    assert (
        CronSpec.from_uwsgi(day=3, weekday=-1).day_restricted,
        CronSpec.from_uwsgi(day=-3).day_restricted,
    ) == (True, False)


def test_spec_built_from_sets_defaults_to_restricted_when_not_every_value() -> None:
    spec = CronSpec(range(60), range(24), {13}, range(1, 13), {5})

    assert spec.day_restricted
    assert spec.weekday_restricted
    assert spec == CronSpec.parse("* * 13 * 5")


# Bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "value", "allowed"),
    [
        ({"minute": 61}, "minute", "61", "from 0 to 59"),
        ({"minute": 60}, "minute", "60", "from 0 to 59"),
        ({"minute": -60}, "minute", "-60", "from 0 to 59"),
        ({"hour": 24}, "hour", "24", "from 0 to 23"),
        ({"day": 32}, "day", "32", "from 1 to 31"),
        ({"day": 0}, "day", "0", "from 1 to 31"),
        ({"month": 0}, "month", "0", "from 1 to 12"),
        ({"month": 13}, "month", "13", "from 1 to 12"),
        ({"weekday": 8}, "weekday", "8", "from 0 to 7"),
        ({"weekday": -8}, "weekday", "-8", "from 0 to 7"),
        ({"minute": "5"}, "minute", "'5'", "int"),
        ({"hour": 1.5}, "hour", "1.5", "int"),
        ({"day": True}, "day", "True", "int"),
    ],
)
def test_out_of_range_uwsgi_field_names_field_value_and_range(
    fields: dict, field: str, value: str, allowed: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        CronSpec.from_uwsgi(**fields)

    message = str(caught.value)
    assert f"cron {field} {value}:" in message
    assert allowed in message


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("* * *", ["'* * *'", "need 5 fields", "got 3"]),
        ("* * * * * *", ["got 6"]),
        ("", ["need 5 fields", "got 0"]),
        ("61 * * * *", ["minute field '61'", "out of range 0-59"]),
        ("* 24 * * *", ["hour field '24'", "out of range 0-23"]),
        ("* * 0 * *", ["day field '0'", "out of range 1-31"]),
        ("* * 32 * *", ["day field '32'"]),
        ("* * * 13 *", ["month field '13'", "1-12"]),
        ("* * * * 8", ["weekday field '8'", "out of range 0-7"]),
        ("* * * foo *", ["month field 'foo'", "not a number", "jan-dec"]),
        ("* * * * funday", ["weekday field 'funday'", "sun-sat"]),
        ("x * * * *", ["minute field 'x'", "not a number"]),
        ("10-5 * * * *", ["minute field '10-5'", "backwards"]),
        ("*/0 * * * *", ["step '0'", ">= 1"]),
        ("*/x * * * *", ["step 'x'"]),
        ("5/2 * * * *", ["a step needs a range", "5-59/2"]),
        ("1,,2 * * * *", ["minute field '1,,2'", "cannot parse ''"]),
        ("1-2-3 * * * *", ["cannot parse '1-2-3'"]),
        ("-60 * * * *", ["minute -60", "-N for every N"]),
        ("@reboot", ["'@reboot'", "unknown alias", "@hourly"]),
    ],
)
def test_unparsable_crontab_names_the_string_and_the_bad_field(
    text: str, fragments: list[str]
) -> None:
    with pytest.raises(ScheduleError) as caught:
        CronSpec.parse(text)

    message = str(caught.value)
    assert f"invalid crontab {text!r}" in message
    for fragment in fragments:
        assert fragment in message


def test_crontab_that_is_not_a_string_is_rejected() -> None:
    with pytest.raises(ScheduleError, match="must be a string"):
        CronSpec.parse(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"minutes": {60}}, "minute values [60]"),
        ({"hours": set()}, "hour values []"),
        ({"weekdays": {"1"}}, "weekday values ['1']"),
        ({"days": {2, 5}, "day_restricted": False}, "unrestricted day field"),
        ({"months": 5}, "month values 5: must be a set of ints"),
    ],
)
def test_spec_built_from_bad_sets_is_rejected(kwargs: dict, fragment: str) -> None:
    fields = {
        "minutes": range(60),
        "hours": range(24),
        "days": range(1, 32),
        "months": range(1, 13),
        "weekdays": range(7),
        **kwargs,
    }
    with pytest.raises(ScheduleError) as caught:
        CronSpec(**fields)

    assert fragment in str(caught.value)


# Rendering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        (CronSpec.from_uwsgi(), "* * * * *"),
        (CronSpec.from_uwsgi(minute=-15, hour=3), "*/15 3 * * *"),
        (CronSpec.from_uwsgi(day=-2, weekday=1), "* * -2 * 1"),
        (CronSpec.from_uwsgi(month=-3), "* * * 3-12/3 *"),
        (CronSpec.from_uwsgi(weekday=7), "* * * * 0"),
        (CronSpec.parse("0 0 1-31 * 1"), "0 0 1-31 * 1"),
        (CronSpec.parse("0 0 * * 0-7"), "0 0 * * 0-6"),
        (CronSpec.parse("5,10,15-17,40 * * * *"), "5,10,15-17,40 * * * *"),
        (CronSpec.parse("@weekly"), "0 0 * * 0"),
        (CronSpec.parse("0 0 * * 5-7"), "0 0 * * 0,5-6"),
    ],
)
def test_spec_renders_as_crontab(spec: CronSpec, text: str) -> None:
    assert str(spec) == text
    assert CronSpec.parse(text) == spec


# Properties -------------------------------------------------------------------------

datetimes = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31))


@settings(max_examples=300, deadline=None)
@given(when=datetimes)
def test_all_stars_match_every_datetime(when: datetime) -> None:
    assert CronSpec.parse("* * * * *").matches(when)
    assert CronSpec.from_uwsgi().matches(when)


def _uwsgi_needs_execution(
    tm: datetime, minute: int, hour: int, day: int, month: int, week: int
) -> bool:
    """A line-by-line port of uWSGI's uwsgi_cron_task_needs_execution (core/master_utils.c)."""
    tm_min, tm_hour, tm_mday = tm.minute, tm.hour, tm.day
    tm_mon = tm.month  # uWSGI does tm_mon++ before calling it
    tm_wday = tm.isoweekday() % 7
    uc_minute, uc_hour, uc_day, uc_month = minute, hour, day, month
    uc_week = 0 if week == 7 else week
    if minute < 0 and tm_min % abs(minute) == 0:
        uc_minute = tm_min
    if hour < 0 and tm_hour % abs(hour) == 0:
        uc_hour = tm_hour
    if month < 0 and tm_mon % abs(month) == 0:
        uc_month = tm_mon
    if day < 0 and tm_mday % abs(day) == 0:
        uc_day = tm_mday
    if week < 0 and tm_wday % abs(week) == 0:
        uc_week = tm_wday
    common = tm_min == uc_minute and tm_hour == uc_hour and tm_mon == uc_month
    if day >= 0 and week >= 0:
        return common and (tm_mday == uc_day or tm_wday == uc_week)
    return common and tm_mday == uc_day and tm_wday == uc_week


def _uwsgi_field(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(low, high), st.integers(-high, -1))


@settings(max_examples=500, deadline=None)
@given(
    when=datetimes,
    minute=_uwsgi_field(0, 59),
    hour=_uwsgi_field(0, 23),
    day=_uwsgi_field(1, 31),
    month=_uwsgi_field(1, 12),
    weekday=_uwsgi_field(0, 7),
)
def test_from_uwsgi_agrees_with_uwsgis_own_check(
    when: datetime, minute: int, hour: int, day: int, month: int, weekday: int
) -> None:
    spec = CronSpec.from_uwsgi(minute, hour, day, month, weekday)

    assert spec.matches(when) is _uwsgi_needs_execution(when, minute, hour, day, month, weekday)


def _crontab_field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    ranged = st.tuples(number, number).map(sorted)
    step = st.integers(1, high + 1)
    item = st.one_of(
        number.map(str),
        ranged.map(lambda r: f"{r[0]}-{r[1]}"),
        st.tuples(ranged, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
    )
    return st.one_of(
        st.just("*"),
        step.map(lambda n: f"*/{n}"),
        st.integers(-high, -1).map(str),
        st.lists(item, min_size=1, max_size=4).map(",".join),
    )


crontabs = st.tuples(
    _crontab_field(0, 59),
    _crontab_field(0, 23),
    _crontab_field(1, 31),
    _crontab_field(1, 12),
    _crontab_field(0, 7),
).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(text=crontabs)
def test_parse_of_a_rendered_spec_round_trips(text: str) -> None:
    spec = CronSpec.parse(text)

    assert CronSpec.parse(str(spec)) == spec


@settings(max_examples=300, deadline=None)
@given(
    minute=_uwsgi_field(0, 59),
    hour=_uwsgi_field(0, 23),
    day=_uwsgi_field(1, 31),
    month=_uwsgi_field(1, 12),
    weekday=_uwsgi_field(0, 7),
)
def test_uwsgi_specs_round_trip_through_crontab(
    minute: int, hour: int, day: int, month: int, weekday: int
) -> None:
    spec = CronSpec.from_uwsgi(minute, hour, day, month, weekday)

    assert CronSpec.parse(str(spec)) == spec


# CronTable ---------------------------------------------------------------------------


def table_with(*entries: tuple[int, CronSpec]) -> CronTable:
    table = CronTable()
    for signum, spec in entries:
        table.add(signum, spec)
    return table


def test_all_any_cron_fires_at_start_then_every_60_seconds_not_at_boundaries() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))

    assert table.due(at(10, 0, 30)) == [5]  # the first check
    assert table.due(at(10, 0, 59, 999_999)) == []
    assert table.due(at(10, 1, 0)) == []  # a boundary, but only 30 s since the fire
    assert table.due(at(10, 1, 29, 999_999)) == []
    assert table.due(at(10, 1, 30)) == [5]
    assert table.due(at(10, 2, 0)) == []
    assert table.due(at(10, 2, 30)) == [5]


def test_cron_with_a_given_minute_fires_at_hh_mm_00_once_per_hour() -> None:
    table = table_with((6, CronSpec.from_uwsgi(minute=5)))

    assert table.due(at(12, 0, 30)) == []
    assert table.due(at(12, 4, 59)) == []
    assert table.due(at(12, 5, 0)) == [6]
    assert table.due(at(12, 5, 30)) == []
    assert table.due(at(12, 5, 59, 999_999)) == []
    assert table.due(at(12, 6, 0)) == []
    assert table.due(at(13, 4, 59)) == []
    assert table.due(at(13, 5, 0)) == [6]
    assert table.due(at(13, 5, 1)) == []
    assert table.due(at(14, 5, 0)) == [6]


def test_cron_started_during_its_minute_fires_at_start() -> None:
    table = table_with((6, CronSpec.from_uwsgi(minute=5)))

    assert table.due(at(12, 5, 40)) == [6]
    assert table.due(at(12, 5, 50)) == []
    assert table.due(at(13, 5, 0)) == [6]


def test_every_five_minutes_cron_fires_at_start_in_a_matching_minute_then_on_the_fives() -> None:
    table = table_with((7, CronSpec.from_uwsgi(minute=-5)))

    assert table.due(at(10, 0, 30)) == [7]  # minute 0 matches: 0 % 5 == 0
    assert table.due(at(10, 1, 30)) == []
    assert table.due(at(10, 5, 0)) == [7]  # 270 s later, the first check in minute 5
    assert table.due(at(10, 5, 30)) == []
    assert table.due(at(10, 6, 0)) == []
    assert table.due(at(10, 10, 0)) == [7]


def test_every_five_minutes_cron_started_between_the_fives_waits() -> None:
    table = table_with((7, CronSpec.from_uwsgi(minute=-5)))

    assert table.due(at(10, 2, 10)) == []
    assert table.due(at(10, 4, 59)) == []
    assert table.due(at(10, 5, 0)) == [7]


def test_consecutive_matching_minutes_fire_60_seconds_apart() -> None:
    table = table_with((4, CronSpec.parse("0-1 * * * *")))

    assert table.due(at(10, 0, 30)) == [4]
    assert table.due(at(10, 1, 0)) == []
    assert table.due(at(10, 1, 30)) == [4]  # still minute 1, and 60 s have passed
    assert table.due(at(10, 2, 0)) == []
    assert table.due(at(11, 0, 0)) == [4]
    assert table.due(at(11, 1, 0)) == [4]


def test_forward_jump_fires_once_not_a_burst_for_skipped_minutes() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))

    assert table.due(at(12, 0)) == [5]
    assert table.due(at(15, 0)) == [5]  # 180 minutes skipped: one signal
    assert table.due(at(15, 0, 30)) == []
    assert table.due(at(15, 1)) == [5]


def test_forward_jump_into_a_matching_minute_fires_at_the_first_check() -> None:
    table = table_with((6, CronSpec.from_uwsgi(minute=30)))
    assert table.due(at(12, 30)) == [6]

    assert table.due(at(15, 30, 45)) == [6]
    assert table.due(at(15, 30, 50)) == []


def test_forward_jump_over_a_matching_minute_skips_it() -> None:
    table = table_with((6, CronSpec.from_uwsgi(minute=30)))

    assert table.due(at(12, 10)) == []
    assert table.due(at(12, 45)) == []
    assert table.due(at(13, 30)) == [6]


def test_small_backward_jump_waits_for_the_last_fire_plus_60_seconds() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))
    assert table.due(at(12, 0)) == [5]
    assert table.due(at(12, 5)) == [5]

    assert table.due(at(12, 1)) == []  # clock set back 4 minutes: now - last_fired < 0
    assert table.due(at(12, 4)) == []
    assert table.due(at(12, 5, 59, 999_999)) == []
    assert table.due(at(12, 6)) == [5]
    assert table.due(at(12, 6, 30)) == []
    assert table.due(at(12, 7)) == [5]


def test_backward_jump_of_seconds_within_a_minute() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))
    assert table.due(at(12, 5, 30)) == [5]

    assert table.due(at(12, 5, 10)) == []
    assert table.due(at(12, 6, 0)) == []
    assert table.due(at(12, 6, 29)) == []
    assert table.due(at(12, 6, 30)) == [5]


def test_dst_fall_back_hour_does_not_rerun_a_job() -> None:
    table = table_with((8, CronSpec.from_uwsgi(minute=30, hour=1)))
    assert table.due(at(1, 30)) == [8]

    assert table.due(at(1, 0)) == []  # 02:00 -> 01:00 local
    assert table.due(at(1, 30)) == []
    assert table.due(at(1, 30, 59)) == []
    assert table.due(at(1, 30, day=9)) == [8]


def test_backward_jump_of_more_than_three_hours_restarts_evaluation() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))
    assert table.due(at(12, 0)) == [5]

    assert table.due(at(8, 59, 30)) == [5]  # 3 h 30 s back: a clock reset
    assert table.due(at(9, 0, 0)) == []
    assert table.due(at(9, 0, 30)) == [5]


def test_backward_jump_of_more_than_three_hours_waits_for_a_matching_minute() -> None:
    table = table_with((6, CronSpec.from_uwsgi(minute=5)))
    assert table.due(at(12, 5)) == [6]

    assert table.due(at(8, 4)) == []  # a reset, but minute 4 does not match
    assert table.due(at(8, 5)) == [6]


def test_backward_jump_of_exactly_three_hours_is_not_a_reset() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))
    assert table.due(at(12, 0)) == [5]

    assert table.due(at(9, 0)) == []
    assert table.due(at(11, 0)) == []
    assert table.due(at(12, 0, 59)) == []
    assert table.due(at(12, 1)) == [5]
    assert timedelta(hours=3) == BACKWARD_RESET


def test_backward_reset_threshold_is_configurable() -> None:
    table = CronTable(backward_reset=timedelta(minutes=10))
    table.add(5, CronSpec.from_uwsgi())
    assert table.due(at(12, 0)) == [5]

    assert table.due(at(11, 50)) == []
    assert table.due(at(11, 49)) == [5]


def test_entry_added_mid_minute_is_evaluated_in_that_minute() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))
    assert table.due(at(12, 0, 10)) == [5]

    table.add(6, CronSpec.from_uwsgi(minute=0))

    assert table.due(at(12, 0, 20)) == [6]
    assert table.due(at(12, 1, 0)) == []
    assert table.due(at(12, 1, 10)) == [5]


def test_due_signals_come_in_the_order_added() -> None:
    table = table_with(
        (9, CronSpec.from_uwsgi()),
        (3, CronSpec.from_uwsgi(minute=1)),
        (4, CronSpec.parse("*/2 * * * *")),
        (9, CronSpec.parse("1 12 * * *")),
    )

    assert table.due(at(12, 0)) == [9, 4]
    assert table.due(at(12, 1)) == [9, 3, 9]
    assert len(table) == 4


def test_empty_table_fires_nothing() -> None:
    assert CronTable().due(at(12, 0)) == []


def test_table_rejects_a_bad_signal_or_spec() -> None:
    table = CronTable()

    with pytest.raises(SignalNumberError):
        table.add(256, CronSpec.from_uwsgi())
    with pytest.raises(ScheduleError, match="'0 \\* \\* \\* \\*': must be a CronSpec"):
        table.add(1, "0 * * * *")  # type: ignore[arg-type]


# When to look next -------------------------------------------------------------------


def test_next_check_after_a_fire_at_half_past_alternates_boundary_and_half_past() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))

    assert table.due(at(10, 0, 30)) == [5]
    assert table.next_check(at(10, 0, 30)) == at(10, 1, 0)  # the boundary comes first
    assert table.due(at(10, 1, 0)) == []
    assert table.next_check(at(10, 1, 0)) == at(10, 1, 30)  # then the fire + 60 s
    assert table.due(at(10, 1, 30)) == [5]
    assert table.next_check(at(10, 1, 30)) == at(10, 2, 0)


def test_next_check_is_the_boundary_when_the_fire_plus_60_seconds_is_not_sooner() -> None:
    table = table_with((6, CronSpec.from_uwsgi(minute=5)))

    assert table.due(at(12, 4, 30)) == []
    assert table.next_check(at(12, 4, 30)) == at(12, 5, 0)  # nothing fired yet
    assert table.due(at(12, 5, 0)) == [6]
    assert table.next_check(at(12, 5, 0)) == at(12, 6, 0)  # the boundary and fire + 60 s
    assert table.next_check(at(23, 59, 59, 500_000)) == datetime(2024, 1, 9, 0, 0)


def test_next_check_takes_the_earliest_entry() -> None:
    table = table_with((5, CronSpec.from_uwsgi()), (6, CronSpec.from_uwsgi()))
    assert table.due(at(10, 0, 20)) == [5, 6]
    table.add(7, CronSpec.from_uwsgi())
    assert table.due(at(10, 0, 45)) == [7]

    assert table.next_check(at(10, 1, 0)) == at(10, 1, 20)
    assert table.due(at(10, 1, 20)) == [5, 6]
    assert table.next_check(at(10, 1, 20)) == at(10, 1, 45)


def test_next_check_after_a_backward_jump_is_the_boundary_until_the_fire_is_near() -> None:
    table = table_with((5, CronSpec.from_uwsgi()))
    assert table.due(at(12, 5, 30)) == [5]

    assert table.due(at(12, 5, 10)) == []
    assert table.next_check(at(12, 5, 10)) == at(12, 6, 0)
    assert table.next_check(at(12, 6, 0)) == at(12, 6, 30)


def test_next_check_of_an_empty_table_is_none() -> None:
    assert CronTable().next_check(at(12, 0)) is None


# EventSources: how long the master sleeps ----------------------------------------------


class FakeClocks:
    """A monotonic clock and a wall clock that advance together."""

    def __init__(self, wall: datetime) -> None:
        self.start = wall
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 1000.0)

    def sources(self) -> EventSources:
        return EventSources(clock=self.monotonic, wall_clock=self.wall)


def test_master_sleeps_30_seconds_at_a_time_after_a_fire_at_half_past() -> None:
    clocks = FakeClocks(at(10, 0, 30))
    sources = clocks.sources()
    sources.add(CronEvent(5, CronSpec.from_uwsgi()))

    assert sources.timeout() == 0.0  # a new cron is checked at once
    assert sources.due() == [5]
    assert sources.timeout() == pytest.approx(30 + CRON_MARGIN)  # to 10:01:00
    clocks.now += sources.timeout()
    assert sources.due() == []
    assert sources.timeout() == pytest.approx(30.0)  # to 10:01:30 + margin
    clocks.now += sources.timeout()
    assert clocks.wall() == pytest.approx(at(10, 1, 30, 1000), abs=timedelta(microseconds=1))
    assert sources.due() == [5]
    assert sources.timeout() == pytest.approx(30.0)  # to 10:02:00 + margin


def test_master_sleeps_to_the_minute_of_a_fixed_minute_cron() -> None:
    clocks = FakeClocks(at(12, 4, 30))
    sources = clocks.sources()
    sources.add(CronEvent(6, CronSpec.from_uwsgi(minute=5)))

    assert sources.due() == []
    assert sources.timeout() == pytest.approx(30 + CRON_MARGIN)
    clocks.now += sources.timeout()
    assert sources.due() == [6]  # at 12:05:00.001
    assert sources.timeout() == pytest.approx(60.0)


def test_master_does_not_poll_every_second() -> None:
    clocks = FakeClocks(at(10, 0, 30))
    sources = clocks.sources()
    sources.add(CronEvent(5, CronSpec.from_uwsgi()))
    sources.add(CronEvent(6, CronSpec.from_uwsgi(minute=-5)))
    wakes = 0
    fires: list[tuple[int, datetime]] = []

    while clocks.wall() < at(11, 0, 30):
        fires += [(signum, clocks.wall()) for signum in sources.due()]
        wakes += 1
        timeout = sources.timeout()
        assert timeout is not None
        clocks.now += timeout

    assert wakes <= 2 * 60 + 2  # a boundary and a fire + 60 s per minute
    assert [when.replace(microsecond=0) for signum, when in fires if signum == 5] == [
        at(10, minute, 30) for minute in range(60)
    ]
    assert [when.replace(microsecond=0) for signum, when in fires if signum == 6] == [
        at(10, 0, 30),
        *(at(10, minute) for minute in range(5, 60, 5)),
        at(11, 0),
    ]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(12, 0, 0), 60.0),
        (at(12, 0, 30), 30.0),
        (at(12, 0, 30, 250_000), 29.75),
        (at(12, 0, 59, 500_000), 0.5),
        (at(23, 59, 59, 999_999), 0.000001),
    ],
)
def test_seconds_until_next_minute(now: datetime, expected: float) -> None:
    assert seconds_until_next_minute(now) == pytest.approx(expected)


def test_minute_key_drops_seconds() -> None:
    assert minute_key(at(12, 34, 56, 789)) == (2024, 1, 8, 12, 34)


def test_local_now_is_the_naive_local_time() -> None:
    now = local_now()

    assert now.tzinfo is None
    assert abs(now - datetime.now()) < timedelta(seconds=5)


# Properties of the firing rule ----------------------------------------------------------

# Clock steps in seconds: at most 100 s back at a time, never a reset.
clock_steps = st.lists(st.integers(min_value=-100, max_value=400), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(start=datetimes, steps=clock_steps, text=crontabs)
def test_fires_are_in_matching_minutes_and_60_seconds_apart(
    start: datetime, steps: list[int], text: str
) -> None:
    spec = CronSpec.parse(text)
    table = table_with((5, spec))
    now = start
    fired: list[datetime] = []

    for step in steps:
        now += timedelta(seconds=step)
        if table.due(now):
            fired.append(now)

    assert all(spec.matches(when) for when in fired)
    assert all(later - earlier >= timedelta(seconds=60) for earlier, later in pairwise(fired))


@settings(max_examples=200, deadline=None)
@given(
    start=datetimes,
    steps=clock_steps,
    minute=_uwsgi_field(0, 59),
    hour=_uwsgi_field(0, 23),
    day=_uwsgi_field(1, 31),
    month=_uwsgi_field(1, 12),
    weekday=_uwsgi_field(0, 7),
)
def test_due_agrees_with_uwsgis_manage_signal_cron(
    start: datetime,
    steps: list[int],
    minute: int,
    hour: int,
    day: int,
    month: int,
    weekday: int,
) -> None:
    """Checked at whole seconds, the table fires exactly when uWSGI's master loop would."""
    table = table_with((5, CronSpec.from_uwsgi(minute, hour, day, month, weekday)))
    start = start.replace(microsecond=0)
    now = 0  # seconds since start, uWSGI's time_t
    last_job = -(10**9)  # zeroed in uWSGI: "long ago"

    for step in steps:
        now += step
        tm = start + timedelta(seconds=now)
        # uwsgi_manage_signal_cron: needs_execution, then now - last_job >= 60.
        fires = _uwsgi_needs_execution(tm, minute, hour, day, month, weekday) and (
            now - last_job >= 60
        )
        if fires:
            last_job = now
        assert table.due(tm) == ([5] if fires else [])


@settings(max_examples=200, deadline=None)
@given(
    start=datetimes,
    steps=clock_steps,
    text=crontabs,
    probes=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=5),
)
def test_nothing_fires_before_next_check(
    start: datetime, steps: list[int], text: str, probes: list[float]
) -> None:
    table = table_with((5, CronSpec.parse(text)), (6, CronSpec.from_uwsgi()))
    now = start

    for step in steps:
        now += timedelta(seconds=step)
        table.due(now)
        next_check = table.next_check(now)
        assert next_check is not None
        assert now < next_check <= now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for probe in probes:
            before = now + (next_check - now) * probe
            if before < next_check:
                assert copy.deepcopy(table).due(before) == []
