import pytest

# The suite's properties are asserted in support.py: rewritten, they say what differed.
pytest.register_assert_rewrite("tests.concurrency.support")
