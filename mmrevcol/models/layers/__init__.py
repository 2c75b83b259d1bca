from .large_kernel import LargeKernelConv, choose_impl, depthwise_conv2d, depthwise_conv2d_multi

__all__ = ['LargeKernelConv', 'choose_impl', 'depthwise_conv2d', 'depthwise_conv2d_multi']
