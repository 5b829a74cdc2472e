"""What every command runs with: the environment, the three standard streams, and the API client."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from slipway_cli.client import ApiClient
from slipway_cli.config import Settings, config_path, is_private, resolve


@dataclass
class Context:
    env: Mapping[str, str]
    stdin: TextIO
    out: TextIO
    err: TextIO

    def settings(self, args: argparse.Namespace) -> Settings:
        settings = resolve(getattr(args, "url", None), self.env)
        path = config_path(self.env)
        if settings.token_source and settings.token_source.startswith("the config file") and not is_private(path):
            self.err.write(f"Warning: {path} holds your API token and others can read it; run: chmod 600 {path}\n")
        return settings

    def client(self, args: argparse.Namespace) -> ApiClient:
        settings = self.settings(args)
        return ApiClient(settings.url, settings.token, token_source=settings.token_source)
