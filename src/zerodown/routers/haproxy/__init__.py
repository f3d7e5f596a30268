"""HAProxy as zerodown's router: managed (zerodown writes the configuration and runs it) or
attached (only zerodown's servers of one backend of the team's HAProxy)."""
