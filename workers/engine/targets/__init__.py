"""Serving-target drivers: take an approved variant to a production inference server.

`base` holds the contracts (target settings, the deployment spec, results, `TargetError`);
`triton_repository` writes Triton model-repository entries atomically, with `triton_config`
(config.pbtxt) and `triton_stores` (a local folder or S3); `triton` drives a Triton server
(push, load, ready, smoke inference, switch-over, rollback); `batching` turns a benchmark
sweep into batching and instance settings; `registry` finds the kinds of target (a driver
each, `base.TargetDriver`) that can be registered.
Nothing here imports Django or Celery; HTTP clients are imported inside functions.
"""
