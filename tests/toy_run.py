"""A tiny mmengine training (no toolbox, a few ms per iteration) for the checkpoint / NaN-guard tests."""
import uuid

import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner


class Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def forward(self, inputs, labels, mode='loss'):
        logits = self.net(inputs)
        return dict(loss_cls=torch.nn.functional.cross_entropy(logits, labels), loss_reg=logits.pow(2).mean() * 1e-3)


class Data(torch.utils.data.Dataset):
    """16 fixed samples; sample ``nan_at`` (if given) holds a NaN."""

    def __init__(self, nan_at=None):
        self.nan_at = nan_at

    def __len__(self):
        return 16

    def __getitem__(self, i):
        x = torch.randn(8, generator=torch.Generator().manual_seed(i))
        if i == self.nan_at:
            x[0] = float('nan')
        return dict(inputs=x, labels=torch.tensor(i % 3))


def make_runner(work_dir, max_iters, resume=False, checkpoint='SafeCheckpointHook', max_keep_ckpts=1,
                nan_at=None, custom_hooks=(), shuffle=True, **kwargs):
    return Runner(
        model=Toy(), work_dir=str(work_dir), experiment_name=f'toy_{uuid.uuid4().hex[:8]}',
        train_dataloader=dict(dataset=Data(nan_at), sampler=dict(type='DefaultSampler', shuffle=shuffle),
                              batch_size=2, collate_fn=dict(type='default_collate'), num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=10),
        default_hooks=dict(checkpoint=dict(type=checkpoint, interval=1, by_epoch=False,
                                           max_keep_ckpts=max_keep_ckpts),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=list(custom_hooks), resume=resume, randomness=dict(seed=0), default_scope='mmengine',
        **kwargs)
