"""The importer's one refusal type: its message is one line for the user."""

from __future__ import annotations


class HFImportError(ValueError):
    """Input that cannot become a run; nothing has been written when it is raised."""
