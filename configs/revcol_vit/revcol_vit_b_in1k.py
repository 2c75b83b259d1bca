# RevCol-ViT-B ImageNet-1k (paper appendix B.1): C=384, blocks (3, 3, 3, 3), 6 heads, 4 columns; drop path 0.2.
_base_ = './revcol_vit_s_in1k.py'

model = dict(backbone=dict(arch='base', drop_path_rate=0.2), head=dict(in_channels=384))
