"""Agent backends: one module per kind of agent, all implementing `base.AgentBackend`."""
