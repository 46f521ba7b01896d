"""`python -m tests.integration.servers.stdio_entry`: the demo module served as `mcpfleet server` serves one."""

from __future__ import annotations

from mcpfleet_servers.base.app import build_server
from mcpfleet_servers.base.run import configure_logging, run_server
from mcpfleet_servers.base.settings import ServerSettings
from tests.integration.servers.demo import DemoModule


def main() -> None:
    settings = ServerSettings.load()
    configure_logging(settings)
    run_server(build_server(DemoModule(settings.budget()), settings))


if __name__ == "__main__":
    main()
