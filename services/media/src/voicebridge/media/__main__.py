"""`voicebridge-media`: run the media service (configured by environment variables, see config.py)."""

from __future__ import annotations

from voicebridge.runtime import grpc_server
from voicebridge.runtime.config import ConfigError, load_env_file
from voicebridge.runtime.logs import setup_logging

from .config import MediaSettings
from .server import build


def main() -> None:
    load_env_file()
    try:
        settings = MediaSettings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"voicebridge-media: configuration error: {exc}") from None
    setup_logging("media", settings.log_level, settings.log_format)
    grpc_server.run(build(settings))


if __name__ == "__main__":
    main()
