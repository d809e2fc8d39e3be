"""Root conftest: readable assertion failures from kern's installed test kit."""

import pytest

pytest.register_assert_rewrite(
    "kern.testing.conformance",
    "kern.testing.isolation",
    "kern.testing.turns",
    "kern.testing.learning",
)
