# RevCol-L (ImageNet-22k) UPerNet 160k on ADE20K, 640x640 crops: the official recipe
# (_base_/recipes/upernet_ade20k_640_160k_revcol.py: mmseg's ConvNeXt-L 640 data, heads and slide test; AdamW lr 4e-5
# wd 0.01, layer decay 0.9, AMP) with the RevCol-L fragment, drop path 0.3. Official: 53.4 mIoU ss / 53.7 ms.
_base_ = ['./_base_/recipes/upernet_ade20k_640_160k_revcol.py', './_base_/backbones/revcol_l.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, kernel_size=3, drop_path_rate=0.3, reversible=False),
             decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
