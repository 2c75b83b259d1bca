"""Which checkpoint a run resumes from: complete files only, the most recently written first.

Used by ``SafeCheckpointHook`` (auto-resume) and ``tools/train.py`` (does ``--resume`` find anything?).
"""
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional

__all__ = ['is_complete_checkpoint', 'newest_complete_checkpoint', 'read_last_checkpoint', 'step_pattern']


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file (a zip archive whose central directory is intact).

    A file cut short by a crash loses the central directory at its end, so this is cheap and catches torn
    files without loading the tensors.
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith('data.pkl') for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def step_pattern(filename_tmpl: str) -> re.Pattern:
    """A regex matching the names ``filename_tmpl`` (e.g. ``'iter_{}.pth'``) makes, the step as group 1."""
    head, _, tail = filename_tmpl.partition('{}')
    return re.compile('^' + re.escape(head) + r'(\d+)' + re.escape(tail) + '$')


def newest_complete_checkpoint(dirs: List[str], filename_tmpl: str,
                               extra: Optional[str] = None) -> Optional[str]:
    """The most recently written complete checkpoint named by ``filename_tmpl`` in ``dirs`` (or ``extra``).

    Most recently written rather than highest step: a work dir reused by a shorter run may still hold a
    higher-numbered checkpoint of the earlier run.
    """
    pattern = step_pattern(filename_tmpl)
    found = {}
    for dirname in dict.fromkeys(d for d in dirs if d and osp.isdir(d)):
        for name in os.listdir(dirname):
            match = pattern.match(name)
            if match:
                found[osp.abspath(osp.join(dirname, name))] = int(match.group(1))
    if extra and osp.isfile(extra):
        found.setdefault(osp.abspath(extra), -1)

    def age(path):
        try:
            return os.stat(path).st_mtime_ns, found[path]
        except OSError:
            return -1, found[path]

    for path in sorted(found, key=age, reverse=True):
        if is_complete_checkpoint(path):
            return path
    return None


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path ``<work_dir>/last_checkpoint`` names, or None."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except OSError:
        return None
