"""Local provider simulators: real HTTP servers that speak each provider's protocol."""
