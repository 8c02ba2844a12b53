"""`voicebridge-edge`: run the edge service (configured by environment variables, see config.py)."""

from __future__ import annotations

import uvicorn

from voicebridge.runtime.config import settings_or_exit
from voicebridge.runtime.logs import setup_logging
from voicebridge.runtime.metrics import start_metrics_server

from .config import EdgeSettings
from .draining import DrainingServer
from .wiring import build_app


def main() -> None:
    settings = settings_or_exit("edge", EdgeSettings.from_env)
    setup_logging("edge", settings.log_level, settings.log_format)
    # /metrics on its own listener (a daemon thread), never on the port Twilio and the internet reach.
    metrics_server = start_metrics_server(settings.metrics_port, settings.metrics_host)
    app = build_app(settings)
    config = uvicorn.Config(
        app,
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
        timeout_graceful_shutdown=5,  # after the drain (draining.py): only what is left over
    )
    DrainingServer(config, app.state.drain, settings.drain_deadline_s).run()
    if metrics_server is not None:
        metrics_server.shutdown()


if __name__ == "__main__":
    main()
