"""HTTP API v1: parse, authorize, call a service, render. ``create_app`` is the entry point."""
