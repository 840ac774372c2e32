"""Talking to a cell. Every module here but ``client`` (the host side) ships inside the image and
uses only the standard library and relative imports; keep this file free of imports."""
