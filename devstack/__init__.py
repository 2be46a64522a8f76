"""The local s3mesh stack: an S3 store on several endpoints, ext-authz and Envoy, on loopback.

`python -m devstack run` is what `make run` starts; the integration tests under `tests/` start
the same stack on free ports through `devstack.stack.Stack`.
"""
