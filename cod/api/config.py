"""The API's settings, and the options resolved from them once per app."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import BridgeSettings
from bridge.logscan import DEFAULT_SCAN_BLOCKS
from bridge.redact import redact


class ApiSettings(BridgeSettings):
    ipfs_gateway: str = "http://127.0.0.1:8080"  # where `links` point (COD_IPFS_GATEWAY)
    api_follow_max_s: float = 300.0  # longest `follow=true` wait; a longer `timeout` is cut to it
    api_max_followers: int = 64  # `follow=true` requests waiting at once; more get 503
    api_scan_blocks: int = DEFAULT_SCAN_BLOCKS  # without a ledger: blocks one request may scan


@dataclass(frozen=True)
class ApiConfig:
    """`settings` plus the API options (their defaults when `settings` is plain BridgeSettings)."""

    settings: BridgeSettings
    gateway: str
    follow_max_s: float
    max_followers: int
    scan_blocks: int

    @classmethod
    def of(cls, settings: BridgeSettings) -> ApiConfig:
        defaults = ApiSettings()
        return cls(
            settings=settings,
            gateway=str(getattr(settings, "ipfs_gateway", defaults.ipfs_gateway)).rstrip("/"),
            follow_max_s=float(getattr(settings, "api_follow_max_s", defaults.api_follow_max_s)),
            max_followers=int(getattr(settings, "api_max_followers", defaults.api_max_followers)),
            scan_blocks=int(getattr(settings, "api_scan_blocks", defaults.api_scan_blocks)))

    def clean(self, text: str) -> str:
        """`text` without the credentials of any configured URL."""
        s = self.settings
        return redact(text, s.rpc_url, s.broker_url, s.ledger_url, s.ipfs_api, self.gateway)
