import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MMREVCOL_SHARED', REPO.parent / 'shared'))
REFERENCE = SHARED / 'reference' / 'revcol_official_tiny3col.pth'

# 2 cores: more intra-op threads than cores only thrash. OMP_NUM_THREADS (torch's default when set) lowers it.
torch.set_num_threads(min(2, torch.get_num_threads(), os.cpu_count() or 1))


def require_shared(path: Path) -> Path:
    """Skip (with the reason) when a file of ../shared is absent: the suite must pass outside this workplace."""
    if not path.exists():
        pytest.skip(f'{path} not found (../shared is only present in the mmrevcol workplace)')
    return path


@pytest.fixture
def reference():
    return torch.load(require_shared(REFERENCE), weights_only=True)
