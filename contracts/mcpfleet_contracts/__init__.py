"""Contracts shared by the mcpfleet operator, servers and gateway: the MCPServer CRD models and its rules."""
