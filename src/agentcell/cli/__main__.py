"""``python -m agentcell.cli``: the ``agentcell`` command."""

from agentcell.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
