"""Schema upgrades through Alembic, for `reunite db upgrade` and `reunite run`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the schema to the newest revision. Runs its own event loop: call it from sync code."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_to_head_async(database_url: str) -> None:
    # env.py runs asyncio.run(), which cannot nest in a running loop: give it a thread of its own
    await asyncio.to_thread(upgrade_to_head, database_url)
