# SLaK-T backbone as the official detection/segmentation code builds it (VITA-Group/SLaK detection/slak.py,
# segmentation/slak.py): kernels 51/49/47/13 decomposed into K×5 + 5×K + 5×5, width x1.3, a SyncBN per branch,
# a LayerNorm on every returned stage. A fragment: configs take ``dict(_base_.slak_backbone, key=value)``.
slak_channels = [124, 249, 499, 998]  # int(d * 1.3) of the tiny dims
slak_backbone = dict(
    _delete_=True,  # replaces the base config's backbone
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
# Official downstream fine-tuning keeps the pre-trained sparse pattern (mask = weight != 0) fixed.
slak_fixed_mask_hook = dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')
