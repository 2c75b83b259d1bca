from .kernel_padding import KernelPaddingHook, pad_kernel, pad_kernels
from .layer_decay import RevColLayerDecayOptimizerConstructor
from .nan_guard import NonFiniteLossError, NonFiniteLossHook
from .safe_checkpoint import SafeCheckpointHook

__all__ = ['KernelPaddingHook', 'pad_kernel', 'pad_kernels', 'RevColLayerDecayOptimizerConstructor',
           'NonFiniteLossError', 'NonFiniteLossHook', 'SafeCheckpointHook']
