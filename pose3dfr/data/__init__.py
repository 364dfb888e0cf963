"""Data: the canonical mesh, synthetic benchmark, data-set loaders, point-cloud utilities, model transforms.

Submodules are imported on demand (Open3D and torch are slow to import), e.g.
``from pose3dfr.data.facescape import FaceScapeMultiView``.
"""
