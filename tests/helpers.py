"""Helpers shared by the test modules."""

from __future__ import annotations

import copy

import pytest


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """The raised error's message, asserted to be the one line a user sees."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def edited(raw: dict, dotted: str, value: object) -> dict:
    """A deep copy of a params mapping with the key at `dotted` (e.g. `probe.C`) set to `value`."""
    raw = copy.deepcopy(raw)
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[leaf] = value
    return raw
