# Sparse training on real images: a reduced SLaK UPerNet from scratch on CamVid (../shared/data/camvid, 11
# classes, CPU, 160x160 crops of half-size images) with dynamic sparsity 0.4 (SNIP init, prune/regrow every 25
# iterations: 23 updates in 600 iterations, prune rate 0.3 cosine-decayed to 0.005), mIoU every 150 iterations.
# Data, optimizer and evaluation from the RevCol CamVid acceptance config.
#   python tools/train.py configs/slak/acceptance/upernet_slak_camvid_sparse.py --work-dir work_dirs/slak_camvid
#   (GPU: add --amp)
# Kill/resume identity of masks and weights:
#   python tools/analysis/check_sparse_resume.py configs/slak/acceptance/upernet_slak_camvid_sparse.py
_base_ = '../../acceptance/upernet_revcol_camvid.py'

channels = [32, 64, 128, 256]
model = dict(
    backbone=dict(
        _delete_=True,
        type='SLaK',
        arch=dict(dims=channels, depths=[1, 1, 2, 1]),
        kernel_size=[31, 29, 27, 13, 5],
        width_factor=1.0,
        drop_path_rate=0.0,
        layer_scale_init_value=1e-6,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=None),
    decode_head=dict(in_channels=channels, dropout_ratio=0.0),
    auxiliary_head=dict(in_channels=channels[2], dropout_ratio=0.0))

max_iters = 600
train_cfg = dict(max_iters=max_iters, val_interval=150)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=150, max_keep_ckpts=2))
custom_hooks = [
    dict(type='DynamicSparsityHook', sparsity=0.4, init='snip', update_interval=25, prune_rate=0.3,
         final_prune_rate=0.005)
]
# mmengine's checkpoints do not hold the global RNG states; the data pipeline's are replayed on resume (the skipped
# batches are loaded again), the model's dropout would not be: no dropout, so a resumed run can be identical.
randomness = dict(seed=0)
