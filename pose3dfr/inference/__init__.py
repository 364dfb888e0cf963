"""Real-photo inference: detection + landmarks + head pose, the Verifier, galleries and 1:N identification, ONNX
export and its runner, the pose explorer. Import the parts from their modules (e.g.
`from pose3dfr.inference.verifier import Verifier`); face basics (image loading, alignment) live one floor down
in `pose3dfr.face`, the head-pose net in `pose3dfr.headpose`."""
