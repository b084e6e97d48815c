from tests.rotation.conftest import stack  # noqa: F401 - shared fixture
