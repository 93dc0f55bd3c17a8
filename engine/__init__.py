"""The conversation engine: model providers, context fitting, retrieval and tool calls.

Nothing here knows about HTTP routes; resources/completion.py drives it."""
