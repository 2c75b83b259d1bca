"""mmrevcol: RevCol backbones for OpenMMLab 3.x. Importing the package registers all of its modules."""
from . import compat  # noqa: F401  (before anything loads a checkpoint)
from .datasets import *  # noqa: F401,F403
from .engine import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
