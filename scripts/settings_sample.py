"""Write local.settings.sample.json from shared.config.SETTINGS (run: python -m scripts.settings_sample)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.config import SETTINGS


def sample() -> dict[str, object]:
    values: dict[str, str] = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsFeatureFlags": "EnableWorkerIndexing",
    }
    for spec in SETTINGS:
        values[spec.name] = spec.local_example or spec.default or ""
    return {"IsEncrypted": False, "Values": values}


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "local.settings.sample.json"
    path.write_text(json.dumps(sample(), indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
