"""The page and the only code that knows Dash callbacks."""
