"""Runtime backends, one module per runtime, found by name through `registry`."""
