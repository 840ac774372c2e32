"""Where cells run: the backend seam (``base``), the manager, and the Docker backend."""
