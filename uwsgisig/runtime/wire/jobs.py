"""The values of a spool job, and how they are written in a job file.

A job is a dict of str keys. Its values may be str, bytes, int, float, bool,
None, and lists and dicts (with str keys) of those, nested; each comes back
from the file as it went in, of the same type. Anything else (a tuple, a
set, a date, an object) is refused before anything is written, with the key
and the value named.

In the file the job is JSON with one tag per value that JSON cannot tell
apart: bytes are ``{"b": "<base64>"}`` and a dict is ``{"d": {...}}``; every
other value is itself. Floats are written with Python's ``repr``, which reads
back exactly (NaN and the infinities included).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

__all__ = ["JobValueError", "check_job", "decode_job", "encode_job"]

JobValue = str | bytes | int | float | bool | None | list[Any] | dict[str, Any]

_ALLOWED = "str, bytes, int, float, bool, None, or lists and dicts (with str keys) of those"


class JobValueError(TypeError):
    """A spool job holds a value that cannot be written and read back as it is."""


def check_job(message: object) -> dict[str, JobValue]:
    """``message`` as a job (a new dict); `JobValueError` naming the first bad key or value."""
    if not isinstance(message, Mapping):
        raise JobValueError(f"a spool job is a dict with str keys, not {message!r}")
    job: dict[str, JobValue] = {}
    for key, value in message.items():
        if not isinstance(key, str):
            raise JobValueError(f"invalid spool job key {key!r}: keys are str")
        _check(value, repr(key))
        job[key] = value
    return job


def _check(value: object, where: str) -> None:
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise JobValueError(
                    f"invalid spool job value at {where}: dict key {key!r} is not a str"
                )
            _check(item, f"{where}[{key!r}]")
        return
    raise JobValueError(
        f"invalid spool job value {value!r} ({type(value).__name__}) at {where}: "
        f"values are {_ALLOWED}"
    )


def encode_job(job: Mapping[str, JobValue]) -> dict[str, Any]:
    """The job as JSON-ready data, tagged (see the module's docstring)."""
    return {key: _encode(value) for key, value in job.items()}


def _encode(value: JobValue) -> Any:
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {"d": {key: _encode(item) for key, item in value.items()}}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def decode_job(data: object) -> dict[str, JobValue]:
    """The job `encode_job` wrote; ValueError if ``data`` is not one."""
    if not isinstance(data, dict):
        raise ValueError(f"a job is a JSON object, not {type(data).__name__}")
    return {key: _decode(value) for key, value in data.items()}


def _decode(value: Any) -> JobValue:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value  # type: ignore[no-any-return]
    if set(value) == {"b"} and isinstance(value["b"], str):
        try:
            return base64.b64decode(value["b"], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"bad base64 in a job's bytes: {exc}") from exc
    if set(value) == {"d"} and isinstance(value["d"], dict):
        return {key: _decode(item) for key, item in value["d"].items()}
    raise ValueError(f"an untagged object in a job: {sorted(value)}")
