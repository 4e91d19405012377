"""Contact with a real LLM: measured traces, the fitted service-time model, measurement."""
