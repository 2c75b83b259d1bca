# ConvNeXt-T Mask2Former 160k on ADE20K with the very recipe of configs/mask2former_revcol_t_ade20k.py
# (_base_/recipes/mask2former_ade20k_160k.py): mmseg's Mask2Former setting, AdamW lr 1e-4, backbone lr x0.1, no
# weight decay on norms / embeddings, drop path 0.3; only the backbone differs (configs/_base_/backbones/convnext_t.py).
_base_ = ['../_base_/recipes/mask2former_ade20k_160k.py', '../_base_/backbones/convnext_t.py']
custom_imports = dict(imports=['mmrevcol', 'mmpretrain.models'], allow_failed_imports=False)
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.3),
             decode_head=dict(in_channels=_base_.backbone_channels))
