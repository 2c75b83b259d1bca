"""Initialisation shared by the ConvNeXt-family backbones (RevCol, RevCol-ViT, SLaK)."""
from mmengine.model.weight_init import trunc_normal_init
from torch import nn


def convnext_init_(module: nn.Module) -> None:
    """The official from-scratch init: trunc-normal(0.02) for every conv and linear weight, zero bias (norms keep
    weight 1, bias 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            trunc_normal_init(m, std=.02, bias=0.)
