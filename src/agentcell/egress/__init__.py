"""The egress proxy on the server's side (DESIGN §10): what a cell's connections may reach, by
the policy of the user whose cell they came from, and secrets put in on the way out."""
