import pytest

from ..conftest import FIXTURE


@pytest.fixture
def worker_env(emulator_env, cio_emulator):
    cio_emulator.reset(FIXTURE)
    return {**emulator_env, "WEBHOOK_RETRY_BASE_SECONDS": "0.3", "CUSTOMERIO_MAX_RETRIES": "0"}
