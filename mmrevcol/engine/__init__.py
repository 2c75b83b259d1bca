from .agc import AGCAmpOptimWrapper, AGCOptimWrapper, adaptive_clip_grad_, unitwise_norm
from .kernel_padding import KernelPaddingHook, pad_kernel, pad_kernels
from .layer_decay import RevColLayerDecayOptimizerConstructor

__all__ = [
    'AGCAmpOptimWrapper', 'AGCOptimWrapper', 'adaptive_clip_grad_', 'unitwise_norm', 'KernelPaddingHook',
    'pad_kernel', 'pad_kernels', 'RevColLayerDecayOptimizerConstructor'
]
