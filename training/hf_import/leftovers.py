"""What a killed import leaves in the root, found and tidied by the next import of the name.

An import builds its run in ``.import-NAME-PID-HEX`` and, with ``--overwrite``, moves the
run it replaces to ``.old-NAME-PID-HEX`` for the moment between two renames. The pid in the
name tells a leftover (its process is gone) from a concurrent import's folder (its process
is alive: left alone). A leftover build is deleted; a leftover old run is put back when
nothing holds its name (the kill came between the renames), else deleted (the kill came
after the new run was in place).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from training.atomic import new_tmp_dir, tmp_name

BUILD, OLD = ".import-", ".old-"


def _prefix(kind: str, name: str) -> str:
    return f"{kind}{name}-{os.getpid()}-"


def new_build_dir(root: Path, name: str) -> Path:
    """This process's hidden folder to build run ``name`` in."""
    return new_tmp_dir(root, _prefix(BUILD, name))


def aside_name(root: Path, name: str) -> Path:
    """Where the run being replaced waits while the new one is renamed in."""
    return tmp_name(root, _prefix(OLD, name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own (another thread's) import
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:
        return False
    return True


def _stale(root: Path, kind: str, name: str) -> list[Path]:
    """Folders ``kind`` of run ``name`` whose import process is gone, oldest first."""
    pattern = re.compile(rf"^{re.escape(kind + name)}-([0-9]+)-[0-9a-f]+$")
    found = []
    for entry in root.iterdir():
        m = pattern.match(entry.name)
        if m and entry.is_dir() and not entry.is_symlink() and not _alive(int(m.group(1))):
            found.append(entry)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def tidy(root: Path, name: str, note: Callable[[str], object]) -> None:
    """Delete a killed import's build folders of ``name`` and put back (or delete) the run
    a killed ``--overwrite`` had moved aside; ``note`` gets a line for each."""
    if not root.is_dir():
        return
    for build in _stale(root, BUILD, name):
        shutil.rmtree(build, ignore_errors=True)
        note(f"removed {build.name}, left in {root} by an import that was killed")
    for old in reversed(_stale(root, OLD, name)):  # the newest one is the latest run
        final = root / name
        if not final.exists():
            os.rename(old, final)
            note(
                f"put run {name!r} back from {old.name}: an import killed while replacing "
                "it had moved it aside"
            )
        else:
            shutil.rmtree(old, ignore_errors=True)
            note(f"removed {old.name}, a replaced run an import was killed deleting")
