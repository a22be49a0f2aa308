"""Process settings, read from MCU_* environment variables and an optional .env file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_ORG_FILE = Path(__file__).parent / "defaults" / "okha.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MCU_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///data/mcu.sqlite3"
    data_dir: Path = Path("data")
    telegram_token: SecretStr | None = None
    telegram_api_url: str | None = None
    telegram_bot_username: str | None = None
    vk_token: SecretStr | None = None
    vk_group_id: int | None = None
    vk_api_url: str | None = None
    vk_callback_enabled: bool = False
    vk_callback_host: str = "0.0.0.0"
    vk_callback_port: int = 8081
    vk_callback_path: str = "/vk/callback"
    vk_callback_confirmation: SecretStr | None = None
    vk_callback_secret: SecretStr | None = None
    org_file: Path = DEFAULT_ORG_FILE
    timezone: str = "Asia/Sakhalin"
    locale: str = Field(default="ru", pattern="^(ru|en)$")
    flood_limit_per_minute: int = 20
    # SQLite: seconds a statement waits for another connection's lock (busy_timeout).
    sqlite_busy_timeout: float = Field(default=30.0, ge=0)
    log_level: str = "INFO"
    # Telegram's total for the bot, in any one-second window (its limit is about 30/s; the
    # margin absorbs clock and network jitter). On PostgreSQL it holds for all processes.
    telegram_messages_per_second: float = Field(default=28, gt=0)
    # "text": one line per event; "json": one JSON object per line (for log collectors).
    log_format: str = Field(default="text", pattern="^(text|json)$")
    # Webhook deployments (`mcu serve`): the public https address nginx answers on, and the
    # secret Telegram sends back in X-Telegram-Bot-Api-Secret-Token.
    public_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_path: str = "/telegram/webhook"
    # /healthz and /metrics (and the webhooks under `mcu serve`); `mcu run` serves them only
    # when serve_port is set.
    serve_host: str = "127.0.0.1"
    serve_port: int | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("telegram_token", "vk_token", "vk_group_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None

    @property
    def vk_enabled(self) -> bool:
        return self.vk_token is not None and self.vk_group_id is not None
