"""Arrays in, arrays out: files, captures, metrics and the public API; no Dash."""
