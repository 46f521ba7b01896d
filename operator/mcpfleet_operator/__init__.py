"""The mcpfleet operator: turns MCPServer objects into running, least-privileged MCP servers."""
