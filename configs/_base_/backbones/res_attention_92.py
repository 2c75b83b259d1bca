# Residual Attention Network, Attention-92: 51.3M params / 10.4 GFLOPs / 80.5% ImageNet-1k top-1 in the paper.
_base_ = './res_attention_56.py'
backbone = dict(arch='92')
