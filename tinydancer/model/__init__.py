"""The model both routing modes share: the FastGRNN cell, INT8 quantization, the
safetensors model format, split-conformal calibration, the embedding contract and the
aligned staging buffers that feed the jitted kernels.

May import: `tinydancer.errors` and third-party numerics (JAX, numpy, safetensors).
"""
