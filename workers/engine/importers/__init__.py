"""Framework importers: PyTorch, TensorFlow/Keras, TFLite, scikit-learn, XGBoost, LightGBM -> ONNX."""
