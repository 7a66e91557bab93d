"""``vlserve purge``: apply the retention limits once (the server also does it every
``retention.purge_interval`` seconds). Safe while servers run: queued and running jobs stay."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from vlserve.cli.config import load_or_exit


def purge_command(
    config: Annotated[Path | None, typer.Option(help="Settings file (TOML, JSON or YAML).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="The data directory (default: the configured one).")] = None,
) -> None:
    """Delete finished jobs, artifacts and audit logs past their retention; print what went (JSON)."""
    from vlserve.service.jobs import open_store
    from vlserve.service.retention import purge

    settings = load_or_exit(config, data_dir=data_dir)

    async def run() -> dict[str, int]:
        store = open_store(settings.jobs)
        try:
            return (await purge(settings, store)).as_dict()
        finally:
            await store.aclose()

    typer.echo(json.dumps(asyncio.run(run())))
