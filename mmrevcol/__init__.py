"""mmrevcol: RevCol backbones for OpenMMLab 3.x. Importing the package registers all of its modules."""
from .utils.noise import import_noise as _import_noise

with _import_noise():  # in the project's tools only: the stack's import-time deprecation noise goes to their log
    from . import compat  # noqa: F401  (before anything loads a checkpoint)
    from .datasets import *  # noqa: F401,F403
    from .engine import *  # noqa: F401,F403
    from .models import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
