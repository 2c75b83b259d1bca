# SLaK-T backbone as the official detection/segmentation code builds it (VITA-Group/SLaK detection/slak.py,
# segmentation/slak.py): kernels 51/49/47/13 decomposed into K×5 + 5×K + 5×5, width x1.3, a SyncBN per branch,
# a LayerNorm on every returned stage. Configs take it as  backbone=dict(_base_.backbone, _delete_=True, key=value).
# Official downstream fine-tuning keeps the pre-trained sparse pattern fixed: the SLaK detection/segmentation configs
# add  custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]  (docs/slak.md).
backbone = dict(
    type='SLaK',
    arch='tiny',
    kernel_size=[51, 49, 47, 13, 5],
    width_factor=1.3,
    decompose=True,
    drop_path_rate=0.4,
    layer_scale_init_value=1.0,
    out_indices=(0, 1, 2, 3),
    out_norm=True,
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    # official ImageNet-1k checkpoint (classification layout; converted on load, see docs/slak.md)
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/SLaK_tiny_checkpoint.pth'))
backbone_channels = [124, 249, 499, 998]  # int(d * 1.3) of the tiny dims
