"""SafeCheckpointHook: no checkpoint lost by a crash while saving, resume from the newest complete checkpoint,
checkpoints that plain ``torch.load(weights_only=True)`` reads without mmrevcol (issue #9 rows 6 and 18)."""
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

import mmrevcol  # noqa: F401  (registers the hooks)
from mmrevcol.utils.atomic_io import atomic_write
from mmrevcol.engine.safe_checkpoint import (from_plain_message_hub, is_complete_checkpoint,
                                             to_plain_checkpoint)
from tools_loader import load_tool
from toy_run import make_runner

REPO = Path(__file__).resolve().parents[1]


class Crash(Exception):
    pass


class Record(Hook):
    """What the run starts from (after load/resume), to compare with what was saved."""
    priority = 'LOWEST'

    def __init__(self):
        self.start = {}

    def before_train(self, runner):
        self.start['iter'] = runner.iter
        self.start['loss_history'] = runner.message_hub.get_scalar('train/loss').data[0].copy() \
            if 'train/loss' in runner.message_hub.log_scalars else None
        self.start['weights'] = {k: v.clone() for k, v in runner.model.state_dict().items()}


def _resume(work_dir, max_iters, **kwargs):
    record = Record()
    runner = make_runner(work_dir, max_iters, resume=True, custom_hooks=[record], **kwargs)
    runner.train()
    return runner, record.start


def _crash_in_torch_save(monkeypatch, at_call):
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise Crash(f'simulated crash while saving (torch.save call {at_call})')
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', save)


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """max_keep_ckpts=1 (the demo/acceptance configs): mmengine deletes iter_2 before writing iter_3."""
    _crash_in_torch_save(monkeypatch, at_call=3)
    with pytest.raises(Crash):
        make_runner(tmp_path, 5, max_keep_ckpts=1).train()
    monkeypatch.undo()
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == '.pth' or p.name.endswith('.tmp'))
    assert names == ['iter_2.pth'], names  # no iter_3, no temporary file left behind
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(tmp_path / 'iter_2.pth')
    runner, start = _resume(tmp_path, 4, max_keep_ckpts=1)
    assert start['iter'] == 2 and runner.iter == 4
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_4.pth']


@pytest.mark.parametrize('damage', ['missing', 'torn', 'stale_last_checkpoint', 'no_last_checkpoint'])
def test_resume_falls_back_to_newest_complete_checkpoint(damage, tmp_path, caplog):
    make_runner(tmp_path, 3, max_keep_ckpts=2).train()
    newest, previous = tmp_path / 'iter_3.pth', tmp_path / 'iter_2.pth'
    expected = 2
    if damage == 'missing':
        newest.unlink()
    elif damage == 'torn':  # a file cut short, as a writer killed mid-way leaves it
        data = newest.read_bytes()
        newest.write_bytes(data[:len(data) // 2])
        assert not is_complete_checkpoint(str(newest))
    elif damage == 'stale_last_checkpoint':  # killed after the rename, before last_checkpoint was updated
        (tmp_path / 'last_checkpoint').write_text(str(previous))
        expected = 3
    else:
        (tmp_path / 'last_checkpoint').unlink()
        expected = 3
    runner, start = _resume(tmp_path, 4, max_keep_ckpts=2)
    assert start['iter'] == expected and runner.iter == 4
    log = ''.join(p.read_text() for p in tmp_path.glob('*/*.log'))
    assert 'resuming from the newest complete checkpoint' in log and f'iter_{expected}.pth' in log


def test_checkpoint_is_plain_data_and_resumes_the_message_hub(tmp_path):
    runner = make_runner(tmp_path, 3)
    runner.train()
    saved_history = runner.message_hub.get_scalar('train/loss').data
    ckpt = tmp_path / 'iter_3.pth'
    # A fresh interpreter that never imports mmrevcol, mmengine or numpy reads it weights-only.
    code = textwrap.dedent(f'''
        import sys, torch
        ckpt = torch.load({str(ckpt)!r}, weights_only=True)
        hub = ckpt['message_hub']
        assert ckpt['meta']['iter'] == 3, ckpt['meta']
        assert isinstance(hub['log_scalars']['train/loss']['log_history'], torch.Tensor)
        assert not [m for m in sys.modules if m.split('.')[0] in ('mmrevcol', 'mmengine', 'mmdet', 'mmseg')]
        print('OK', len(ckpt['state_dict']))
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd='/')
    assert proc.returncode == 0 and proc.stdout.startswith('OK'), proc.stderr[-3000:]

    # ... and resumes exactly: the loss history (what LoggerHook averages) and the weights come back.
    _, start = _resume(tmp_path, 4)
    assert start['iter'] == 3
    np.testing.assert_array_equal(start['loss_history'], saved_history[0])
    for key, value in runner.model.state_dict().items():
        torch.testing.assert_close(start['weights'][key], value, rtol=0, atol=0)


def test_plain_conversion_round_trip():
    buffer = HistoryBuffer([1.5, 2.5], [1, 2], max_length=7)
    ckpt = dict(meta=dict(seed=np.int64(3), best=np.float64(0.5), name=np.str_('x'), arr=np.arange(3),
                          dtype=np.dtype('float32'), pair=(np.float32(1), 'a')),
                message_hub=dict(log_scalars={'train/loss': buffer}, runtime_info={'best_score': np.float64(2)},
                                 resumed_keys={'train/loss': True}),
                state_dict={'w': torch.ones(2)})
    to_plain_checkpoint(ckpt)
    meta = ckpt['meta']
    assert type(meta['seed']) is int and type(meta['best']) is float and type(meta['name']) is str
    assert isinstance(meta['arr'], torch.Tensor) and meta['dtype'] == 'float32' and type(meta['pair'][0]) is float
    assert type(ckpt['message_hub']['runtime_info']['best_score']) is float
    from_plain_message_hub(ckpt)
    back = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(back, HistoryBuffer) and back.max_length == 7
    np.testing.assert_array_equal(back.data[0], [1.5, 2.5])
    np.testing.assert_array_equal(back.data[1], [1, 2])


def test_atomic_write_replaces_whole_file_or_nothing(tmp_path, monkeypatch):
    target = tmp_path / 'f.bin'
    atomic_write(str(target), b'old')

    def fail(*args):
        raise Crash('disk full')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(Crash):
        atomic_write(str(target), b'new')
    assert target.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['f.bin']  # the temporary file is cleaned up


def test_shipped_configs_state_the_safe_hooks_and_train_py_keeps_them():
    """The configs state SafeCheckpointHook (the base's interval and max_keep_ckpts kept) and NonFiniteLossHook
    (configs/_base_/runtime/safety.py); tools/train.py changes neither (every config is checked in test_same_run)."""
    train = load_tool('train')
    for config, interval in [('configs/demo/cascade_revcol_demo.py', 300),
                             ('configs/acceptance/upernet_revcol_camvid.py', 300),
                             ('configs/upernet_revcol_t_ade20k.py', 16000)]:
        cfg = train.load_cfg(train.parse_args([str(REPO / config)]))
        hooks = cfg.default_hooks
        assert hooks.checkpoint.type == 'SafeCheckpointHook' and hooks.checkpoint.interval == interval, config
        assert hooks.nan_guard.type == 'NonFiniteLossHook' and not cfg.get('custom_hooks'), config


def test_safety_fragment_builds_every_hook_under_its_fixed_key():
    from mmengine.registry import HOOKS
    hooks = Config.fromfile(str(REPO / 'configs/_base_/runtime/safety.py')).safety_hooks
    expected = dict(checkpoint='SafeCheckpointHook', nan_guard='NonFiniteLossHook',
                    checkpoint_loading='CheckpointLoadingHook', preemption='PreemptionHook',
                    work_dir_lock='WorkDirLockHook', data_errors='DataErrorsHook', consistency='ClassConsistencyHook')
    assert {key: value['type'] for key, value in hooks.items()} == expected
    for key, value in hooks.items():
        assert type(HOOKS.build(dict(value))).__name__ == expected[key]
    import mmrevcol.engine.data_errors as data_errors
    data_errors._POLICY = None  # built above: end it


# ----------------------------------------------------------------------------------------------------------------
# Readable stops (issue #18 row 8): disk full while saving, a work dir that cannot be one
def _disk_full_at(monkeypatch, name):
    from mmrevcol.utils import atomic_io
    real = atomic_io._write_synced_temp

    def write(path, data):
        if os.path.basename(path) == name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a failing write() raises it: no file name
        return real(path, data)

    monkeypatch.setattr(atomic_io, '_write_synced_temp', write)


def test_disk_full_while_saving_is_one_line_and_loses_nothing(tmp_path, monkeypatch, capsys):
    from mmrevcol.utils.cli import run_tool
    _disk_full_at(monkeypatch, 'iter_3.pth')
    assert run_tool(lambda argv: make_runner(tmp_path, 5).train()) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[1].startswith('(traceback in '), err
    assert err[0] == (f'ERROR: cannot write checkpoint {tmp_path / "iter_3.pth"}: No space left on device (ENOSPC): '
                      'the disk is full: free space or write elsewhere (--work-dir). '
                      f'Nothing complete was lost: the last complete checkpoint is {tmp_path / "iter_2.pth"}.'), err
    assert 'Traceback (most recent call last)' in Path(err[1][len('(traceback in '):-1]).read_text()
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(tmp_path / 'iter_2.pth')


@pytest.mark.parametrize('where', ['is_a_file', 'under_a_file'])
def test_invalid_work_dir_is_one_line(where, tmp_path, capsys):
    from mmrevcol.utils.cli import run_tool
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    work = blocker if where == 'is_a_file' else blocker / 'work'
    assert run_tool(lambda argv: make_runner(work, 2)) == 1
    err = capsys.readouterr().err.strip()
    name, hint = ('EEXIST', 'this path exists and is not a folder') if where == 'is_a_file' else \
        ('ENOTDIR', 'a part of this path is a file, not a folder')
    assert err.startswith('ERROR: ') and f'({name}): {work if where == "is_a_file" else blocker / "work"}' in err, err
    assert hint in err and '--work-dir' in err and '\n' not in err.split('(traceback')[0].strip(), err


@pytest.mark.parametrize('number, name', [(errno.EROFS, 'read-only'), (errno.EACCES, 'permission denied')])
def test_read_only_or_forbidden_work_dir_is_described(number, name):
    from mmrevcol.utils.errors import describe, is_expected
    error = OSError(number, os.strerror(number), '/runs/work/20260101_000000')
    assert is_expected(error)
    line = describe(error)
    assert line.startswith(f'{os.strerror(number)} ({errno.errorcode[number]}): /runs/work/20260101_000000: ')
    assert name in line and '--work-dir' in line


def test_arguments_are_checked():
    from mmrevcol.engine.safe_checkpoint import SafeCheckpointHook
    with pytest.raises(TypeError, match='SafeCheckpointHook: interval must be an int >= 1 or -1, got 2.5'):
        SafeCheckpointHook(interval=2.5)
    with pytest.raises(ValueError, match='interval must be an int >= 1 or -1, got 0'):
        SafeCheckpointHook(interval=0)
    with pytest.raises(TypeError, match='max_keep_ckpts must be an int'):
        SafeCheckpointHook(max_keep_ckpts='1')
    with pytest.raises(TypeError, match='by_epoch must be True or False'):
        SafeCheckpointHook(by_epoch=1)
    with pytest.raises(ValueError, match='filename_tmpl'):
        SafeCheckpointHook(filename_tmpl='last.pth')
