"""Configuration, read once from the environment. Every variable is listed in README.md."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    data_dir: Path = field(default_factory=lambda: Path(
        os.environ.get("BOTKIT_DATA_DIR") or PROJECT_DIR / ".data").resolve())
    host: str = field(default_factory=lambda: os.environ.get("HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("PORT", 8000))
    workers: int = field(default_factory=lambda: _int("WORKERS", 1))
    pool_size: int = field(default_factory=lambda: _int("BOTKIT_POOL_SIZE", 10))
    max_body_bytes: int = field(default_factory=lambda: _int("BOTKIT_MAX_BODY_BYTES", 1024 * 1024))
    log_level: str = field(default_factory=lambda: os.environ.get("BOTKIT_LOG_LEVEL", "info"))


def settings() -> Settings:
    return Settings()
