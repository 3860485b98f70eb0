"""FedML's test suite. Helper modules get pytest's assert rewriting, so their checks fail with detail."""

import pytest

pytest.register_assert_rewrite("tests.portal_shapes", "tests.schema_contract", "tests.schema_sql_parse", "tests.stack")
