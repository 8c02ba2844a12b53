"""`voicebridge-media`: run the media service (configured by environment variables, see config.py)."""

from __future__ import annotations

from voicebridge.runtime import grpc_server
from voicebridge.runtime.config import settings_or_exit
from voicebridge.runtime.logs import setup_logging

from .config import MediaSettings
from .server import build


def main() -> None:
    settings = settings_or_exit("media", MediaSettings.from_env)
    setup_logging("media", settings.log_level, settings.log_format)
    grpc_server.run(build(settings))


if __name__ == "__main__":
    main()
