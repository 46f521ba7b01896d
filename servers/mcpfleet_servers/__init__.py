"""mcpfleet's built-in MCP servers (k8s-ops, monitoring, cmdb) and their common base."""
