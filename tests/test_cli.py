"""A custom arch on the command line (issue #9 row 8): ``--cfg-options model.backbone.arch="dict(...)"``."""
import argparse

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
