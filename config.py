"""Configuration, read once from the environment. Every variable is listed in README.md."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


def default_data_dir() -> Path:
    """`.data` in the folder botkit runs from (`make run`: the checkout), never inside
    the installed package."""
    return Path.cwd() / ".data"


def data_dir() -> Path:
    """BOTKIT_DATA_DIR, else the default."""
    return Path(os.environ.get("BOTKIT_DATA_DIR") or default_data_dir()).resolve()


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL") or None)
    data_dir: Path = field(default_factory=data_dir)
    host: str = field(default_factory=lambda: os.environ.get("HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: _int("PORT", 8000))
    workers: int = field(default_factory=lambda: _int("WORKERS", 1))
    pool_size: int = field(default_factory=lambda: _int("BOTKIT_POOL_SIZE", 10))
    # what a client must keep to before any token is read (transport/server.py)
    max_head_bytes: int = field(default_factory=lambda: _int("BOTKIT_MAX_HEAD_BYTES", 65_536))
    max_url_bytes: int = field(default_factory=lambda: _int("BOTKIT_MAX_URL_BYTES", 8_192))
    max_headers: int = field(default_factory=lambda: _int("BOTKIT_MAX_HEADERS", 100))
    head_timeout: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_HEAD_TIMEOUT") or 10))
    body_timeout: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_BODY_TIMEOUT") or 30))
    keepalive_timeout: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_KEEPALIVE_TIMEOUT") or 5))
    max_connections: int = field(default_factory=lambda: _int("BOTKIT_MAX_CONNECTIONS", 16_384))
    # the longest a request waits for a pooled connection before a 503 with Retry-After
    pool_timeout: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_POOL_TIMEOUT") or 5))
    # the connections one account's heavy work (searches, completions, exports) may hold
    # at once in a process (0: half the pool)
    pool_account_share: int = field(default_factory=lambda: _int("BOTKIT_POOL_ACCOUNT_SHARE", 0))
    # the longest any SQL statement may run (seconds; 0: unbounded); searches: 5 s at most
    statement_timeout: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_STATEMENT_TIMEOUT") or 30))
    max_body_bytes: int = field(default_factory=lambda: _int("BOTKIT_MAX_BODY_BYTES", 1024 * 1024))
    # origins allowed to call from a browser: `*` or a comma-separated list (transport/cors.py)
    cors_origins: str = field(default_factory=lambda: os.environ.get("BOTKIT_CORS_ORIGINS") or "*")
    # idle seconds before a completion stream sends a `{"type":"ping"}` line (0: never)
    stream_keepalive_seconds: float = field(
        default_factory=lambda: float(os.environ.get("BOTKIT_STREAM_KEEPALIVE_SECONDS") or 10)
    )
    # channels (resources/channel.py): how long messages are kept, and how long a completion
    # waits for the result of a client-side function published to its channel
    channel_retention_seconds: float = field(
        default_factory=lambda: float(os.environ.get("BOTKIT_CHANNEL_RETENTION_SECONDS") or 3600)
    )
    channel_history_max: int = field(default_factory=lambda: _int("BOTKIT_CHANNEL_HISTORY_MAX", 1000))
    channel_wait_seconds: float = field(
        default_factory=lambda: float(os.environ.get("BOTKIT_CHANNEL_WAIT_SECONDS") or 120)
    )
    # the event log (resources/event.py): days events are kept
    event_retention_days: float = field(
        default_factory=lambda: float(os.environ.get("BOTKIT_EVENT_RETENTION_DAYS") or 30)
    )
    # background jobs (store/queue.py) this process runs at once; 0: none (`botkit worker` runs them)
    job_concurrency: int = field(default_factory=lambda: _int("BOTKIT_JOB_CONCURRENCY", 4))
    # seconds a job is leased to its runner (renewed every third): a dead runner's job is
    # taken over within this plus a second
    job_lease_seconds: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_JOB_LEASE_SECONDS") or 30))
    # file content (store/files.py): where it is kept (unset: <data dir>/files; s3://bucket?endpoint=...),
    # the largest file, how long signed URLs live, and the URL clients reach botkit at (signed URLs)
    storage_url: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_STORAGE_URL") or None)
    storage_access_key_id: str | None = field(
        default_factory=lambda: os.environ.get("BOTKIT_STORAGE_ACCESS_KEY_ID") or None
    )
    storage_secret_access_key: str | None = field(
        default_factory=lambda: os.environ.get("BOTKIT_STORAGE_SECRET_ACCESS_KEY") or None
    )
    file_max_bytes: int = field(default_factory=lambda: _int("BOTKIT_FILE_MAX_BYTES", 1024 * 1024 * 1024))
    file_url_seconds: int = field(default_factory=lambda: _int("BOTKIT_FILE_URL_SECONDS", 900))
    # addresses botkit may fetch although private (engine/fetch.py): CIDRs and host names, comma-separated
    fetch_allow: str = field(default_factory=lambda: os.environ.get("BOTKIT_FETCH_ALLOW", ""))
    public_url: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_PUBLIC_URL") or None)
    log_level: str = field(default_factory=lambda: os.environ.get("BOTKIT_LOG_LEVEL", "info"))
    # The conversation engine's model providers (engine/models.py). With no base URL the
    # one model is the embedded retrieval responder (no network, no weights).
    model_base_url: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_MODEL_BASE_URL") or None)
    model_api_key: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_MODEL_API_KEY") or None)
    models: str = field(default_factory=lambda: os.environ.get("BOTKIT_MODELS", ""))
    model_default: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_MODEL_DEFAULT") or None)
    model_max_tokens: int = field(default_factory=lambda: _int("BOTKIT_MODEL_MAX_TOKENS", 8192))
    model_max_output_tokens: int = field(default_factory=lambda: _int("BOTKIT_MODEL_MAX_OUTPUT_TOKENS", 1024))
    model_connect_timeout: float = field(
        default_factory=lambda: float(os.environ.get("BOTKIT_MODEL_CONNECT_TIMEOUT") or 5)
    )
    model_read_timeout: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_MODEL_READ_TIMEOUT") or 60))
    model_retries: int = field(default_factory=lambda: _int("BOTKIT_MODEL_RETRIES", 2))
    # requests a minute (0 turns a limit off); see transport/ratelimit.py
    rate_limit: int = field(default_factory=lambda: _int("BOTKIT_RATE_LIMIT", 1200))
    rate_limit_account: int = field(default_factory=lambda: _int("BOTKIT_RATE_LIMIT_ACCOUNT", 3000))
    rate_limit_messages: int = field(default_factory=lambda: _int("BOTKIT_RATE_LIMIT_MESSAGES", 60))
    rate_limit_history: int = field(default_factory=lambda: _int("BOTKIT_RATE_LIMIT_HISTORY", 100))
    rate_limit_auth_failures: int = field(default_factory=lambda: _int("BOTKIT_RATE_LIMIT_AUTH_FAILURES", 30))
    processes: int = field(default_factory=lambda: _int("BOTKIT_PROCESSES", 0))  # 0: WORKERS
    auth_cache_seconds: float = field(default_factory=lambda: float(os.environ.get("BOTKIT_AUTH_CACHE_SECONDS") or 10))
    session_secret: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_SESSION_SECRET") or None)
    # Embeddings for dataset search (pgvector): unset, the built-in model; `off`, none
    # (full-text + trigram only); another name, that model at an OpenAI-compatible
    # /embeddings endpoint (engine/embeddings.py).
    embeddings_model: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_EMBEDDINGS_MODEL") or None)
    embeddings_base_url: str | None = field(
        default_factory=lambda: os.environ.get("BOTKIT_EMBEDDINGS_BASE_URL") or None
    )
    embeddings_api_key: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_EMBEDDINGS_API_KEY") or None)
    # Speech for conversation/{id}/message/{id}/synthesize: a model of an OpenAI-compatible
    # /audio/speech endpoint (unset: no synthesis; the built-in responder has no voice).
    speech_model: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_SPEECH_MODEL") or None)
    speech_base_url: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_SPEECH_BASE_URL") or None)
    speech_api_key: str | None = field(default_factory=lambda: os.environ.get("BOTKIT_SPEECH_API_KEY") or None)
    speech_voice: str = field(default_factory=lambda: os.environ.get("BOTKIT_SPEECH_VOICE") or "alloy")

    @property
    def admin_token_file(self) -> Path:
        """One admin token per database, so that each stays valid: `admin-token` for the
        embedded one, `admin-token-<host>-<port>-<database>` for a DATABASE_URL's."""
        if not self.database_url:
            return self.data_dir / "admin-token"
        url = urlsplit(self.database_url)
        netloc = url.netloc.rpartition("@")[2]
        host = (netloc or "socket").replace(":", "-")
        name = f"{host}{'' if ':' in netloc else '-5432'}-{url.path.strip('/') or 'default'}"
        return self.data_dir / ("admin-token-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name))


def settings() -> Settings:
    return Settings()
