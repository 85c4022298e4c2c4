"""Target parsing: every form of the seeds, and parse(str(target)) == target."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uwsgisig import TargetError
from uwsgisig.runtime.model.targets import Target, parse_target

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("", Target("worker")),
        ("worker", Target("worker")),
        ("worker0", Target("worker")),
        ("worker7", Target("worker", index=7)),
        ("workers", Target("workers")),
        ("active-workers", Target("active-workers")),
        ("mule", Target("mule")),
        ("mule0", Target("mule")),
        ("mule12", Target("mule", index=12)),
        ("mules", Target("mules")),
        ("spooler", Target("spooler")),
        ("farm_images", Target("farm", name="images")),
        ("farm_a.b-c_d", Target("farm", name="a.b-c_d")),
        ("farm3", Target("farm", index=3)),
    ],
)
def test_parse_target(text, target):
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["workerx", "worker01", "mule-1", "farm0", "farm_", " worker"])
def test_parse_target_refuses_malformed_text(text):
    with pytest.raises(TargetError, match="invalid signal target"):
        parse_target(text)


targets = st.one_of(
    st.sampled_from(["worker", "workers", "active-workers", "mule", "mules", "spooler"]).map(
        Target
    ),
    st.builds(Target, st.just("worker"), index=st.integers(1, 99999)),
    st.builds(Target, st.just("mule"), index=st.integers(1, 99999)),
    st.builds(Target, st.just("farm"), index=st.integers(1, 99999)),
    st.builds(
        Target, st.just("farm"), name=st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True)
    ),
)


@given(targets)
def test_parse_of_str_is_the_same_target(target):
    assert parse_target(str(target)) == target
