"""The hot path's JSON (statesync._json): orjson's speed, the stdlib's results."""

from __future__ import annotations

import json
import math

import pytest

from statesync import _json


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "cus_1", "n": 12, "f": 1.5, "s": "\\u00e9t\\u00e9", "l": [true, null]}',
        b'{"big": 123456789012345678901234567890, "neg": -98765432109876543210}',
        b'{"edge": 18446744073709551616, "i64": 9223372036854775808}',
        b'{"id": "1234567890123456789012", "n": 1}',
        b"[NaN, Infinity, -Infinity]",
        b'{"lone": "\\ud800"}',
        '{"text": "é"}'.encode("utf-16"),
    ],
)
def test_loads_matches_the_stdlib(raw: bytes) -> None:
    expected = json.loads(raw)
    got = _json.loads(raw)
    assert json.dumps(got) == json.dumps(expected)


def test_big_integers_stay_exact() -> None:
    value = _json.loads(b'{"a": 123456789012345678901234567890}')["a"]
    assert value == 123456789012345678901234567890
    assert isinstance(value, int)


def test_bad_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        _json.loads(b'{"a": ')


@pytest.mark.parametrize(
    "value",
    [
        {"id": "x", "n": 1, "nested": {"l": [1, 2.5, None, True]}, "s": "été"},
        {"big": 2**80, "small": -(2**70)},
        {1: "int key", "b": "x"},
        [[[[["deep"]]]]],
    ],
)
def test_dumps_is_compact_json_the_stdlib_reads_back(value: object) -> None:
    text = _json.dumps(value)
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(json.dumps(value, separators=(",", ":")))
    assert ", " not in text and ": " not in text


def test_dumps_nests_as_deep_as_the_stdlib() -> None:
    value: list[object] = []
    for _ in range(400):  # past orjson's limit of 254
        value = [value]
    assert _json.dumps(value) == json.dumps(value, separators=(",", ":"))


def test_dumps_refuses_what_json_cannot_hold() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(ValueError):
        _json.dumps(cycle)
    with pytest.raises(TypeError):
        _json.dumps({"when": object()})


def test_non_finite_floats_become_null() -> None:
    assert _json.dumps({"x": math.nan, "y": math.inf}) == '{"x":null,"y":null}'
