from .large_kernel import LargeKernelConv, choose_impl, depthwise_conv2d, depthwise_conv2d_multi
from .norm import LayerNorm2d

__all__ = ['LargeKernelConv', 'LayerNorm2d', 'choose_impl', 'depthwise_conv2d', 'depthwise_conv2d_multi']
