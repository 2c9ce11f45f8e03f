import pytest

from pdfchat.common import deadlines
from pdfchat.common.errors import DeadlineExceeded


def test_timeout_is_the_default_without_a_deadline() -> None:
    token = deadlines.bind(None)
    try:
        assert deadlines.timeout(30.0) == 30.0
    finally:
        deadlines.reset(token)


def test_timeout_never_exceeds_the_remaining_deadline() -> None:
    token = deadlines.bind(2.0)
    try:
        assert deadlines.timeout(30.0) <= 2.0
        assert deadlines.timeout(0.5) == 0.5
    finally:
        deadlines.reset(token)


def test_expired_deadline_refuses_the_call() -> None:
    token = deadlines.bind(-1.0)
    try:
        with pytest.raises(DeadlineExceeded):
            deadlines.timeout(30.0)
    finally:
        deadlines.reset(token)
