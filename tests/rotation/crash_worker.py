"""A worker process that dies abruptly (os._exit) right after a given rotation step.

Usage: python -m tests.rotation.crash_worker '<settings json>' '<job json>' <step>
"""

import asyncio
import json
import os
import sys

from shared.config import load_settings
from shared.domain.models import RotationJob
from shared.services import Services

KILLED = 137


def main() -> None:
    environment = json.loads(sys.argv[1])
    job = RotationJob.model_validate_json(sys.argv[2])
    crash_after = sys.argv[3]
    os.environ.update(environment)
    services = Services(load_settings(environment))

    def checkpoint(step: str) -> None:
        if step == crash_after:
            os._exit(KILLED)  # no cleanup, no finally blocks: as if the host process were killed

    services.checkpoint = checkpoint
    asyncio.run(services.engine.handle(job))
    sys.exit(0)


if __name__ == "__main__":
    main()
