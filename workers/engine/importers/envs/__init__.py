"""Framework sides that run in their own interpreter environment (docs/adr/0017).

A framework whose libraries can't live beside Slipway's own (MXNet needs numpy < 2,
paddle2onnx pins an older onnx, caffe2onnx ships protobuf code of 2019) is installed into a
virtual environment of its own (`workers.engine.framework_envs`). What must run with the
framework (load the model, convert it, run it as the reference) is a module here, started as
`<env>/bin/python -s -m workers.engine.importers.envs.<name>_side REQUEST RESULT` inside the
sandbox. These modules import only the standard library, numpy and their framework, never
the rest of the engine, whose libraries the environment does not have.
"""
