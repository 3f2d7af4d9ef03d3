"""Inference behind one interface (eager PyTorch, TorchScript, onnxruntime), the export bundle format it
reads, and batch inference over a manifest. Below search, evaluation, export and serving alike."""
