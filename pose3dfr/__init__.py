"""pose3dfr: pose-robust 2D face recognition that learns from 3D.

Reimplements "2D-3D Attention and Entropy for Pose Robust 2D Facial Recognition"
(Peace, Hu, Riggan, IEEE FG 2025, arXiv 2505.09073): a 2D face network and a point-cloud network
share a joint attention map tied together by a joint-entropy loss; at test time the 2D network alone
verifies a frontal enrollment photo against a probe at any pose.
"""

__version__ = "0.1.0"
