"""The `mcpfleet` command line: one entry point for the operator, servers, gateway and tools."""
