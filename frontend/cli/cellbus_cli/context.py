"""`Context`: what a command needs from the invocation: the server, the token, the printer.

Built once in `main` from the global options and the config file. The stored token is sent
only to the server it was issued by: `--url` naming another server is "not logged in" there
(exit 2) rather than a token handed to whoever listens at that URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .client import FeedSocket, RpcClient
from .config import Config, load_config, save_config
from .errors import EXIT_USAGE, CliError
from .terminal import Printer


def normalize_url(url: str) -> str:
    """`url` without trailing slashes; "host:port" means http://host:port."""
    url = url.strip().rstrip("/")
    if not url:
        raise CliError("the server URL is empty", EXIT_USAGE)
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")):
        raise CliError(f"not an http(s) URL: {url}", EXIT_USAGE)
    return url


@dataclass
class Context:
    config_dir: Path
    url_option: str | None = None
    printer: Printer = field(default_factory=Printer)
    rpc_timeout: float = 30.0
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_dir)
        return self._config

    def save(self, config: Config) -> None:
        save_config(self.config_dir, config)
        self._config = config

    def server_url(self, explicit: str | None = None) -> str:
        """The server: `explicit` (a command's URL argument), else --url, else the stored one."""
        url = explicit or self.url_option or self.config.url
        if not url:
            raise CliError("no server: run `cellbus login URL` or pass --url", EXIT_USAGE)
        return normalize_url(url)

    def token(self, url: str) -> str:
        """The stored token for `url`; `CliError` (exit 2) when not logged in there."""
        config = self.config
        if not config.token or not config.url:
            raise CliError("not logged in: run `cellbus login URL`", EXIT_USAGE)
        if normalize_url(config.url) != url:
            raise CliError(
                f"not logged in to {url} (logged in to {config.url}): run `cellbus login {url}`",
                EXIT_USAGE,
            )
        return config.token

    def token_if_any(self, url: str) -> str | None:
        """The stored token if it was issued by `url`, else None (for anonymous calls)."""
        try:
            return self.token(url)
        except CliError:
            return None

    def rpc(self, url: str | None = None, *, anonymous: bool = False) -> RpcClient:
        url = url or self.server_url()
        """A client for `url` with the stored token; `anonymous`: with no token at all."""
        token = None if anonymous else self.token(url)
        return RpcClient(url, token, timeout=self.rpc_timeout)

    def feed(self, url: str | None = None) -> FeedSocket:
        url = url or self.server_url()
        return FeedSocket(url, self.token(url))
