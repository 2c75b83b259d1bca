# HIRI-ViT-B for the dense-prediction configs; see hiri_vit_s.py for the choices.
hiri_vit_b = dict(
    _delete_=True,
    type='HIRIViT',
    arch='b',
    out_indices=(1, 2, 3, 4),
    drop_path_rate=0.3,
    norm_eval=True,
    init_cfg=dict(type='Pretrained', checkpoint='checkpoints/hiri_vit_b_in1k_448.pth'))
hiri_vit_b_channels = [96, 192, 384, 512]  # channels of stages 2-5 (HIRIViT.arch_settings['base'])
