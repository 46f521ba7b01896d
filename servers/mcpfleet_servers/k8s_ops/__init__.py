"""The k8s-ops MCP server: Kubernetes reads, guarded changes and manifest generation as typed tools."""
