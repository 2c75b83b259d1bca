# RevCol-B (ImageNet-1k) UPerNet 160k on ADE20K, 512x512 (official recipe, see upernet_revcol_t_ade20k.py), lr 4e-5.
# Official: 49.0 mIoU ss / 50.1 ms.
_base_ = ['./_base_/recipes/upernet_ade20k_160k_revcol.py', './_base_/backbones/revcol_b.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, kernel_size=3, drop_path_rate=0.3, reversible=False),
             decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
optim_wrapper = dict(optimizer=dict(lr=4e-5))
