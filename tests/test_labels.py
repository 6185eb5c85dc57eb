"""Selector satisfiability against brute force over every label assignment."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from nsgsync.compile.labels import satisfiable
from nsgsync.model import LabelSelector

KEYS = ["a", "b"]
VALUES = ["x", "y", "z"]
# Every label set over KEYS: each key absent, one of VALUES, or a value no selector names.
ASSIGNMENTS = [
    {k: v for k, v in zip(KEYS, combo, strict=True) if v is not None}
    for combo in itertools.product([None, "x", "y", "z", "unnamed"], repeat=len(KEYS))
]

requirement = st.one_of(
    st.builds(
        lambda k, op, vs: {"key": k, "operator": op, "values": vs},
        st.sampled_from(KEYS),
        st.sampled_from(["In", "NotIn"]),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=2, unique=True),
    ),
    st.builds(
        lambda k, op: {"key": k, "operator": op},
        st.sampled_from(KEYS),
        st.sampled_from(["Exists", "DoesNotExist"]),
    ),
)
selector = st.builds(
    lambda ml, me: LabelSelector.model_validate({"matchLabels": ml, "matchExpressions": me}),
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2),
    st.lists(requirement, max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(selector, max_size=3), st.lists(selector, max_size=4))
def test_satisfiable_agrees_with_brute_force(
    must: list[LabelSelector], must_not: list[LabelSelector]
) -> None:
    expected = any(
        all(s.matches(labels) for s in must) and not any(s.matches(labels) for s in must_not)
        for labels in ASSIGNMENTS
    )
    assert satisfiable(must, must_not) == expected


def test_catch_all_after_a_tier_segment_holds_no_pod_of_that_tier() -> None:
    backend = LabelSelector.model_validate({"matchLabels": {"tier": "backend"}})
    rest = LabelSelector()
    # "the rest of the namespace" and "tier=backend" never meet: the policy selects none of it
    assert not satisfiable([rest, backend], [backend])
    assert satisfiable([rest], [backend])
