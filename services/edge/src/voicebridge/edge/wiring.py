"""Builds the edge app from settings: the Twilio REST client and the signature checks, when configured."""

from __future__ import annotations

from fastapi import FastAPI

from .app import create_app
from .config import EdgeSettings


def build_app(settings: EdgeSettings) -> FastAPI:
    return create_app(settings)
