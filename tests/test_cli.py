"""A custom arch on the command line (issue #9 row 8): ``--cfg-options model.backbone.arch="dict(...)"``."""
import argparse
import logging

import pytest
from mmengine.config import DictAction

import mmrevcol  # noqa: F401
from mmrevcol.utils.cli import LiteralDictAction, parse_literal
from tools_loader import REPO, load_tool
ARCH = 'model.backbone.arch=dict(channels=[16,32,48,64],layers=[1,1,1,1],num_columns=4)'


def _parse(*items, action=LiteralDictAction):
    parser = argparse.ArgumentParser(prog='train.py')
    parser.add_argument('--cfg-options', nargs='+', action=action)
    return parser.parse_args(['--cfg-options', *items]).cfg_options


def test_mmengine_dict_action_recursion_is_what_we_replace():
    with pytest.raises(RecursionError):
        _parse(ARCH, action=DictAction)


@pytest.mark.parametrize('text, expected', [
    ('dict(channels=[8,16],layers=[1,2],num_columns=4)', dict(channels=[8, 16], layers=[1, 2], num_columns=4)),
    ("{'channels': [8, 16], 'num_columns': 4}", dict(channels=[8, 16], num_columns=4)),
    ('[dict(type=BN,eps=-1e-3),dict(type=GN)]', [dict(type='BN', eps=-1e-3), dict(type='GN')]),
    ('dict(a=(1,2),b=None,c=True,d="x y")', dict(a=(1, 2), b=None, c=True, d='x y')),
])
def test_dict_values(text, expected):
    assert _parse(f'k={text}') == {'k': expected}


def test_other_values_parse_as_mmengine_parses_them():
    items = ['a=[1,2]', 'b=1,2,3', 'c=[a,b]', 'd=None', 'e=(1,2)', 'f=[(1,2),(3,4)]', 'g=hello', 'h=-1.5', 'i=true']
    assert _parse(*items) == _parse(*items, action=DictAction)


def test_nothing_is_executed():
    with pytest.raises(ValueError, match='not a literal'):
        parse_literal("dict(a=__import__('os').system('true'))")


def test_custom_arch_reaches_the_backbone():
    from mmengine.registry import MODELS
    train = load_tool('train')
    args = train.parse_args([str(REPO / 'configs/cascade_revcol_t_coco.py'), '--cfg-options', ARCH,
                             'model.backbone.init_cfg=None'])
    cfg = train.load_cfg(args)
    assert cfg.model.backbone.arch == dict(channels=[16, 32, 48, 64], layers=[1, 1, 1, 1], num_columns=4)
    backbone = MODELS.build(cfg.model.backbone)
    assert backbone.channels == [16, 32, 48, 64] and backbone.num_columns == 4


@pytest.mark.parametrize('bad', ['model.backbone.arch=dict(channels=[16,32', 'model.backbone.arch=dict(x=open(1))',
                                 'model.backbone.arch'])
def test_malformed_value_is_one_line(bad, capsys):
    train = load_tool('train')
    with pytest.raises(SystemExit) as info:
        train.parse_args(['configs/demo/cascade_revcol_demo.py', '--cfg-options', bad])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f'error: --cfg-options {bad}: ' in lines[0], lines


# ----------------------------------------------------------------------------------------------------------------
# run_tool: one line for an expected failure, third-party noise in the log (issue #21)
def _third_party_warning(message, category=UserWarning):
    import warnings
    warnings.warn_explicit(message, category, '/venv/lib/python3.11/site-packages/mmengine/utils/package_utils.py', 17)


def test_run_tool_keeps_third_party_noise_off_the_console(tmp_path, capsys):
    import warnings

    from mmrevcol.utils.cli import run_tool
    log = tmp_path / 'tool.log'

    def main(argv):
        _third_party_warning('pkg_resources is deprecated as an API')
        _third_party_warning('torch.foo is deprecated', FutureWarning)
        warnings.warn('a warning of the project itself', UserWarning)  # this file is under tests/: not third-party
        print('the result')
        return ['results', 'for', 'callers']  # not a status

    with warnings.catch_warnings(record=True) as shown:  # what would reach the console
        warnings.simplefilter('always')
        assert run_tool(main, [], log_file=str(log)) == 0
    out, err = capsys.readouterr()
    assert 'the result' in out
    assert [str(w.message) for w in shown] == ['a warning of the project itself']
    assert 'pkg_resources' not in out + err and 'torch.foo' not in out + err
    assert err.strip().splitlines()[-1] == f'(2 third-party warning(s) kept off the console: {log})'
    text = log.read_text()
    assert 'pkg_resources is deprecated' in text and 'FutureWarning: torch.foo is deprecated' in text


def test_run_tool_expected_error_is_the_last_line(tmp_path, capsys):
    from mmrevcol.utils.cli import MissingInputError, require_path, run_tool
    missing = tmp_path / 'nowhere.pth'

    def main(argv):
        require_path(str(missing), 'checkpoint', "or 'none'")

    assert run_tool(main, [], log_file=str(tmp_path / 'tool.log')) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"ERROR: checkpoint not found: '{missing}' (absolute: {missing}); or 'none'"
    assert 'Traceback' in (tmp_path / 'tool.log').read_text() and not any('Traceback' in line for line in err)
    assert issubclass(MissingInputError, FileNotFoundError)  # callers that caught FileNotFoundError still do

    def bug(argv):
        raise KeyError('a bug keeps its traceback')

    with pytest.raises(KeyError):
        run_tool(bug, [])


def test_flop_counter_lists_go_to_the_log(tmp_path, capsys):
    import torch

    from mmrevcol.utils.cli import run_tool
    from mmrevcol.utils.complexity import model_complexity
    log = tmp_path / 'flops.log'
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(), torch.nn.Conv2d(4, 4, 1))

    def main(argv):
        info = model_complexity(model.eval(), (torch.zeros(1, 3, 8, 8), ))
        assert info['flops'] == 6 * 6 * 4 * 27 + 6 * 6 * 4 * 4 and info['params'] == 4 * 27 + 4 + 4 * 4 + 4
        return 0

    assert run_tool(main, [], log_file=str(log)) == 0
    out, err = capsys.readouterr()
    assert 'Unsupported operator' not in out + err and 'gelu' not in out + err
    assert 'operators without a FLOP handle (not counted): aten::gelu x1' in log.read_text()


def test_init_weights_dump_outside_a_runner_goes_to_the_log(tmp_path, capsys):
    """mmengine prints one record per parameter after init_weights when its logger has no file (a tool's build)."""
    from mmengine.model import BaseModule

    from mmrevcol.utils.cli import run_tool
    log = tmp_path / 'build.log'

    class Tiny(BaseModule):

        def __init__(self):
            super().__init__(init_cfg=dict(type='Constant', layer='Conv2d', val=1.0))
            import torch
            self.conv = torch.nn.Conv2d(2, 3, 1)

    shown = []

    class Console(logging.Handler):  # the logger's own console handler may hold an earlier test's captured stream

        def emit(self, record):
            shown.append(record.getMessage())

    from mmengine.logging import MMLogger
    # the current logger has no file, as in a tool's process (after a run's logger, mmengine writes to that run's file)
    logger = MMLogger.get_instance(f'init_dump_{tmp_path.name}', log_file=None)
    logger.addHandler(Console())

    def main(argv):
        Tiny().init_weights()
        logger.info('a message of the tool itself')
        return 0

    assert run_tool(main, [], log_file=str(log)) == 0
    out, err = capsys.readouterr()
    assert 'a message of the tool itself' in shown and not any('torch.Size' in m for m in shown), shown
    assert 'torch.Size' not in out + err
    assert 'conv.weight - torch.Size([3, 2, 1, 1])' in log.read_text()


@pytest.mark.parametrize('message, category, filename, noise', [
    ('pkg_resources is deprecated as an API', UserWarning, '/usr/lib/python3.11/importlib/__init__.py', True),
    ('anything', FutureWarning, '/venv/site-packages/torch/nn/modules/module.py', True),
    ('``build_loss`` would be deprecated soon', UserWarning, '/venv/site-packages/mmseg/models/builder.py', True),
    ('Grad strides do not match bucket view strides', UserWarning, '/venv/site-packages/torch/autograd/graph.py',
     False),
    ('something is deprecated', DeprecationWarning, str(REPO / 'mmrevcol' / 'engine' / 'x.py'), False),
])
def test_what_counts_as_noise(message, category, filename, noise):
    from mmrevcol.utils.noise import is_noise
    assert is_noise(message, category, filename) is noise


def test_noise_before_main_of_a_tool_process_reaches_its_log(tmp_path):
    """In a tool's process, noise raised after ``import mmrevcol`` (the tool's own top-level imports of the stack)
    goes to its log too: through run_tool, and what comes after it at exit."""
    import os
    import subprocess
    import sys
    log = tmp_path / 'tool.log'
    script = tmp_path / 'tool.py'
    script.write_text(
        'import sys, warnings\n'
        f'sys.path.insert(0, {str(REPO)!r})\n'
        'def noise(when):\n'
        '    warnings.warn_explicit(f"pkg_resources is deprecated ({when})", UserWarning,\n'
        '                           "/v/site-packages/m.py", 1)\n'
        'noise("before")\n'  # before mmrevcol: the user's own business, shown
        'import mmrevcol\n'
        'noise("after")\n'  # e.g. a tool's top-level import of the stack
        'from mmrevcol.utils.cli import run_tool\n'
        f'status = run_tool(lambda argv: print("done"), log_file={str(log)!r})\n'
        'noise("late")\n'  # after run_tool: written at exit, to work_dirs/logs/<tool>.log
        'sys.exit(status)\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONWARNINGS'}
    proc = subprocess.run([sys.executable, str(script)], env=dict(env, MMREVCOL_QUIET='1'), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # MMREVCOL_QUIET=1: as if under tools/
    assert proc.returncode == 0 and proc.stdout.strip() == 'done', proc.stderr
    assert '(before)' in proc.stderr and '(after)' not in proc.stderr and '(late)' not in proc.stderr, proc.stderr
    assert '(after)' in log.read_text() and '(before)' not in log.read_text()
    assert '(late)' in (tmp_path / 'work_dirs' / 'logs' / 'tool.log').read_text()
