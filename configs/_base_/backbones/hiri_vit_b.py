# HIRI-ViT-B for the dense-prediction configs: HIRI-ViT-S's fragment (hiri_vit_s.py, for the choices) with the B arch.
_base_ = './hiri_vit_s.py'
backbone = dict(arch='b', drop_path_rate=0.3, init_cfg=dict(checkpoint='checkpoints/hiri_vit_b_in1k_448.pth'))
backbone_channels = [96, 192, 384, 512]  # channels of stages 2-5 (HIRIViT.arch_settings['base'])
