"""Talking to a cell. ``protocol``, ``server`` and ``kernel`` ship inside the image (stdlib only);
``client`` runs on the host. Keep this file free of imports: the image copies the package."""
