"""One module per panel; the registry lists them."""
