"""Deployment outputs: the trained detector as an ONNX graph, results as DICOM objects.

Heavy dependencies (onnx, onnxruntime, highdicom: the `export` extra) are imported inside the
functions that need them, so importing this package costs nothing.
"""
