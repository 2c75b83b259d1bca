"""Import a script of tools/ as a module (in-process: no interpreter start-up per call)."""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'mmrevcol_tools_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
