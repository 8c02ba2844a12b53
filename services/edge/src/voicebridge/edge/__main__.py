"""`voicebridge-edge`: run the edge service (configured by environment variables, see config.py)."""

from __future__ import annotations

import uvicorn

from voicebridge.runtime.config import settings_or_exit
from voicebridge.runtime.logs import setup_logging

from .config import EdgeSettings
from .wiring import build_app


def main() -> None:
    settings = settings_or_exit("edge", EdgeSettings.from_env)
    setup_logging("edge", settings.log_level, settings.log_format)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",  # the cheapest WebSocket implementation measured (docs/performance.md)
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=False,  # +35% CPU for nothing: audio does not compress
        ws_ping_interval=None,  # Twilio streams media continuously; it does not answer pings
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
