"""The Docker backend: cells as hardened containers (docker-py, imported lazily)."""
