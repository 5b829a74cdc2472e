"""The model engine: plain Python that reads, checks and inspects model files.

Nothing here imports Django or Celery, and heavy libraries (onnx, onnxruntime) are
imported inside the functions that need them, so the web process can import
`formats` and `archive` cheaply.
"""
