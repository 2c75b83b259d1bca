"""Imported first by ``mmrevcol/__init__.py``: in a process of the project's tools, the stack's deprecation noise goes
to the tool's log from here on (:func:`mmrevcol.utils.noise.quiet_tool_process`; nothing happens elsewhere)."""
from .noise import quiet_tool_process

quiet_tool_process()
