"""Export: a train run's models to ONNX / TorchScript, verified against eager PyTorch, in one bundle."""
