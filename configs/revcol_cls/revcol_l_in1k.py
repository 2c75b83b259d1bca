# RevCol-L ImageNet-1k pre-training. The official RevCol-L is pre-trained on ImageNet-22k only (no 1k recipe is
# published); this applies the 1k recipe of RevCol-B (revcol_b_in1k.py) with the paper's drop path for L (0.5).
_base_ = './revcol_b_in1k.py'
model = dict(backbone=dict(arch='large', drop_path_rate=0.5), head=dict(in_channels=1024))
