"""firmware/config.py's validator under CPython with generated JSON trees: it accepts a tree
or names one problem on one line, and never raises (a bad config.json must not brick a
board). Plain Python, so CPython runs the same code the board does."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ringtail.device import fwconfig

config = fwconfig.load()

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


def _answer_is_well_formed(tree: object) -> None:
    cfg, problem = config.validate(tree)
    if cfg is None:
        assert isinstance(problem, str) and problem and "\n" not in problem
    else:
        assert problem is None and isinstance(cfg, dict)
        assert set(cfg) == set(config._TOP_KEYS)
        for m in cfg["metrics"]:
            assert isinstance(m["deadband_units"], int) and 0 <= m["deadband_units"] < 1 << 30


def _paths(tree: object, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*path, i))
    return out


def _full() -> dict:
    full = config.defaults()
    for m in full["metrics"]:
        del m["exp"], m["deadband_units"]
    return full


FULL = _full()
PATHS = _paths(FULL)


@settings(max_examples=400, deadline=None)
@given(json_trees)
def test_any_tree_gets_an_answer_never_an_exception(tree: object) -> None:
    _answer_is_well_formed(tree)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(PATHS), json_trees)
def test_a_valid_config_with_one_field_replaced(path: tuple, value: object) -> None:
    """Garbage where the validator looks hardest: at a real field of a full config."""
    tree = json.loads(json.dumps(FULL))
    if not path:
        tree = value
    else:
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = value
    _answer_is_well_formed(tree)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_file_bytes_get_an_answer(data: bytes) -> None:
    cfg, problem = config.parse(data)
    assert (cfg is None) != (problem is None)


def test_a_huge_integer_is_described_not_printed() -> None:
    cfg, problem = config.validate({"batch_s": 10**5000})
    assert (
        cfg is None and problem == "batch_s: must be an integer 1..1800, got a very large integer"
    )


def test_non_string_keys_are_a_problem_not_a_crash() -> None:
    cfg, problem = config.validate({"coap": {1: 2}})
    assert cfg is None and problem == "coap: keys must be strings"
