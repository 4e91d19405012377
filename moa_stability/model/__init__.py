"""The exact model: the network description, the traffic equations and per-device loads."""
