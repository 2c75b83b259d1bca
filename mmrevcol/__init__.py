"""mmrevcol: RevCol backbones for OpenMMLab 3.x. Importing the package registers all of its modules."""
from .utils import _tool_noise  # noqa: F401  (first: in the project's tools the stack's noise goes to their log)
from . import compat  # noqa: F401  (before anything loads a checkpoint)
from .datasets import *  # noqa: F401,F403
from .engine import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
