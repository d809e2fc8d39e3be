"""Root conftest: readable assertion failures from kern's installed test kit.

kern's pytest plugin (``kern.testing.pytest_plugin``) registers the same modules wherever it
is loaded; naming them here too keeps kern's own runs readable with plugin autoloading off.
``kern.testing.conformance`` is a package: its topic modules are rewritten with it.
"""

import pytest

pytest.register_assert_rewrite(
    "kern.testing.conformance",
    "kern.testing.isolation",
    "kern.testing.turns",
    "kern.testing.learning",
    "kern.testing.files",
    "kern.testing.scenarios",
)
