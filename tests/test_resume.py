"""Resume a killed run with torch's weights-only checkpoint loading left on (mmrevcol.compat)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import json, sys, time
    import torch
    import mmrevcol  # noqa: F401  (allow-lists mmengine's checkpoint types)
    from mmengine.hooks import Hook
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from mmrevcol.models import RevCol

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.backbone = RevCol(arch=dict(channels=[8, 16, 24, 32], layers=[1, 1, 1, 1], num_columns=2),
                                   reversible=True, drop_path_rate=0.1)
            self.head = torch.nn.Linear(32, 3)

        def forward(self, inputs, labels, mode='loss'):
            logits = self.head(self.backbone(inputs)[-1].mean((2, 3)))
            return dict(loss=torch.nn.functional.cross_entropy(logits, labels))

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return dict(inputs=torch.randn(3, 64, 64, generator=g), labels=torch.tensor(i % 3))

    class HangAfter(Hook):
        priority = 'LOWEST'  # after the CheckpointHook has written the checkpoint

        def __init__(self, at):
            self.at = at

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == self.at:
                print('READY', flush=True)
                time.sleep(600)  # the test kills us here

    work_dir, max_iters, resume, hang = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1', int(sys.argv[4])
    runner = Runner(
        model=Toy(), work_dir=work_dir,
        train_dataloader=dict(dataset=Data(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                              collate_fn=dict(type='default_collate'), num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=10),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[HangAfter(hang)] if hang else [],
        resume=resume, randomness=dict(seed=0), default_scope='mmengine')
    start = {}

    class Record(Hook):
        def before_train(self, runner):
            start['iter'] = runner.iter
            start['exp_avg'] = [s['exp_avg'].sum().item() for s in runner.optim_wrapper.optimizer.state.values()]
            start['lr'] = runner.optim_wrapper.get_lr()['lr'][0]

    runner.register_hook(Record(), priority='LOWEST')
    runner.train()
    print('RESULT ' + json.dumps(dict(start=start, end_iter=runner.iter)), flush=True)
''')


def _run(script, *args, **kwargs):
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_killed_run_resumes_at_next_iteration_with_optimizer_state(tmp_path):
    script = tmp_path / 'train_toy.py'
    script.write_text(SCRIPT)
    work_dir = tmp_path / 'work'
    proc = _run(script, work_dir, 100, 0, 2)
    deadline = time.time() + 300
    lines = []
    for line in proc.stdout:  # wait until iteration 2 is checkpointed, then kill -9
        lines.append(line)
        if line.startswith('READY') or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.exists(), ''.join(lines[-30:])

    # The checkpoint loads with weights-only semantics once mmrevcol is imported ...
    import mmrevcol  # noqa: F401
    saved = torch.load(ckpt, weights_only=True)
    assert saved['meta']['iter'] == 2
    # ... and not without the allow-list (so the allow-list is what makes it work).
    plain = subprocess.run([sys.executable, '-c', f'import torch; torch.load({str(ckpt)!r}, weights_only=True)'],
                           capture_output=True, text=True)
    assert plain.returncode != 0 and 'weights_only' in plain.stderr

    out = _run(script, work_dir, 3, 1, 0)
    text = out.communicate(timeout=300)[0]
    assert out.returncode == 0, text[-3000:]
    result = json.loads(text.split('RESULT ', 1)[1].splitlines()[0])
    assert result['start']['iter'] == 2 and result['end_iter'] == 3
    expected = [s['exp_avg'].sum().item() for s in saved['optimizer']['state'].values()]
    assert result['start']['exp_avg'] == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert result['start']['lr'] == pytest.approx(saved['optimizer']['param_groups'][0]['lr'])
    assert 'resumed' in text.lower() or 'resume' in text.lower()
    assert (work_dir / 'iter_3.pth').exists()
