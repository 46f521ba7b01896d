"""The mcpfleet gateway: one governed MCP endpoint in front of every cataloged server."""
