from tests.integration.conftest import proxy, upstream  # noqa: F401  (shared fixtures)
