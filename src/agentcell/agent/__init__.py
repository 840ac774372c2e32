"""The agent: a coordinator that delegates to a coder and a browser, all working in the user's
cell through the executor. pydantic-ai runs on the host, so model keys never enter a cell."""
