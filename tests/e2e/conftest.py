"""One running suite shared by every end-to-end test (starting seven services takes a while)."""

from typing import Any

import pytest

from pdfchat_tools.devstack import Stack


@pytest.fixture(scope="session")
def suite(stack_factory: Any) -> Stack:
    return stack_factory()
