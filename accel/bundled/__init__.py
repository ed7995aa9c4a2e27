"""The bundled trained networks (ONNX) and their index ``models.json``; retrained by ``models/train.py``."""
