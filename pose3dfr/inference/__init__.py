"""Real-photo inference: detection + landmarks + head pose, the Verifier, galleries, ONNX export, the pose
explorer. Import the parts from their modules (e.g. `from pose3dfr.inference.verifier import Verifier`);
face basics (image loading, alignment) live one floor down in `pose3dfr.face`."""
