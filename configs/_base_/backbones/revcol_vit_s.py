# RevCol-ViT-S (paper appendix B.1): isotropic columns of ViT blocks, C=224, blocks 2/2/2/2, 4 heads, 4 columns,
# stride-16 patches, reversible. No official weights exist (pre-train with configs/revcol_vit/revcol_vit_s_in1k.py).
# A config takes it as  model = dict(backbone=dict(_base_.backbone, _delete_=True, img_size=..., <overrides>)).
backbone = dict(
    type='RevColViT',
    arch='small',
    drop_path_rate=0.1,
    reversible=True,
    out_indices=(0, 1, 2, 3),
    init_cfg=None)
backbone_channels = [224] * 4  # every level at stride 16
