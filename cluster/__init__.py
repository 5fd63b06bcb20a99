"""The Ray layer: Serve deployments and actors that wrap engine objects.

Thin adapters only; every routing rule lives in `tinydancer`.
"""
