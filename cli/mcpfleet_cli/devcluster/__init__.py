"""A local Kubernetes control plane for development and the e2e tests (`mcpfleet dev cluster`)."""
