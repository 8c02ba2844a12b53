"""`voicebridge-agent`: run the agent service (configured by environment variables, see config.py)."""

from __future__ import annotations

import logging

from voicebridge.runtime import grpc_server
from voicebridge.runtime.config import settings_or_exit
from voicebridge.runtime.logs import setup_logging

from .config import AgentSettings
from .server import build


def main() -> None:
    settings = settings_or_exit("agent", AgentSettings.from_env)
    setup_logging("agent", settings.log_level, settings.log_format)
    logging.getLogger(__name__).info("agent backend: %s", settings.backend)
    grpc_server.run(build(settings))


if __name__ == "__main__":
    main()
