"""Assertions shared by the test modules."""

from __future__ import annotations

import pytest


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """The raised error's message, asserted to be the one line a user sees."""
    message = str(excinfo.value)
    assert "\n" not in message
    return message
