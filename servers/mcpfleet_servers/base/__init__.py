"""The common base of every mcpfleet MCP server: tool declaration, policy, transports, health, metrics."""
