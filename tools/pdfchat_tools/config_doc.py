"""Writes docs/configuration.md from the settings classes themselves, so the list of variables cannot drift.

`python -m pdfchat_tools.config_doc` rewrites the file; a test fails when it is stale.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from pdfchat.common import settings as common
from pdfchat_tools.infra import REPO_ROOT

SERVICE_SETTINGS = {
    "gateway": "GatewaySettings",
    "ingestion": "IngestionSettings",
    "worker_pdf": "WorkerPdfSettings",
    "embedding": "EmbeddingSettings",
    "vector_index": "VectorIndexSettings",
    "orchestrator": "OrchestratorSettings",
    "chat": "ChatSettings",
}
SHARED_SECTIONS: list[type[BaseSettings]] = [
    common.CommonSettings,
    common.AuthSettings,
    common.DatabaseSettings,
    common.NatsSettings,
    common.RedisSettings,
    common.ObjectStoreSettings,
    common.ServiceAddresses,
]
DOC_PATH = REPO_ROOT / "docs" / "configuration.md"

HEADER = """# Configuration

Every setting is an environment variable with the `PDFCHAT_` prefix. Development defaults run the whole suite
on one machine; with `PDFCHAT_ENV=prod` a service refuses to start on a development secret and names the
variable to set. Generated from the settings classes by `python -m pdfchat_tools.config_doc`; do not edit by hand.

Also read by `make up` and the tests: `PDFCHAT_DATA_DIR` (where embedded infrastructure keeps its data,
default `.data/`).
"""


def _default(value: Any) -> str:
    if value is None:
        return "(unset)"
    text = str(value)
    if text == "":
        return '""'
    return f"`{text}`"


def _row(name: str, field: Any) -> str:
    description = " ".join((field.description or "").split())
    return f"| `PDFCHAT_{name.upper()}` | {_default(field.default)} | {description} |"


def _table(rows: list[str]) -> list[str]:
    return ["| variable | default | meaning |", "| --- | --- | --- |", *rows, ""]


def render() -> str:
    lines = [HEADER, "## Shared by the services", ""]
    shared: set[str] = set()
    for section in SHARED_SECTIONS:
        rows = [_row(name, field) for name, field in section.model_fields.items() if name not in shared]
        shared.update(section.model_fields)
        lines += [f"### {section.__name__}", "", *_table(rows)]
    lines += ["## Per service", ""]
    for service, class_name in SERVICE_SETTINGS.items():
        settings_class = getattr(importlib.import_module(f"pdfchat.{service}.settings"), class_name)
        used_sections = [s.__name__ for s in SHARED_SECTIONS if issubclass(settings_class, s)]
        own = [_row(name, field) for name, field in settings_class.model_fields.items() if name not in shared]
        lines += [f"### {service}", "", f"Uses: {', '.join(used_sections)}.", ""]
        lines += _table(own) if own else ["No settings of its own.", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    DOC_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {Path(DOC_PATH).relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
