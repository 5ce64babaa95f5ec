"""Event payloads, one module per producing service. Changed only additively; a breaking change is a new type."""
