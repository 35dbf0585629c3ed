"""App factory, auth, settings and the command lines."""
