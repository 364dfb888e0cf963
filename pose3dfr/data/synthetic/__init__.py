"""Synthetic multi-view 3D face benchmark in FaceScape's layout: seeded identities rendered on a yaw grid.

Each identity is the MediaPipe canonical face (Loop-subdivided; vertex i stays landmark i) deformed by
seeded shape parameters (Gaussian bumps around landmark regions, mostly mirror-symmetric, plus global
proportions), painted with seeded texture parameters (skin, brows, lips, eyes, facial hair, moles,
freckles, a mark on one side), and closed into a head by a skull/neck surface with hair and ears.
Expressions (FaceScape's names) move the mouth, jaw and brows, so identity must survive them.
Shape cues are strong (nose, chin, brow ridge, face depth, jaw) and texture cues moderate, so a 2D
model that has not learnt 3D shape should lose at profile. Nuisance per image: light direction and
colour, background, pitch/roll, scale and shift jitter.

Modules, by concern: config (SynthConfig, constants, seeding), identity (shape/texture parameters,
face mask, expressions), texture (colour and the face texture), head (the renderable head mesh),
views (nuisance, camera, rendering, face point samples), benchmark (the files on disk).
"""

from pose3dfr.data.synthetic.benchmark import generate_benchmark, write_contact_sheet
from pose3dfr.data.synthetic.config import (BROWS_LOWER, BROWS_UPPER, CHEEKS, EXPRESSIONS, EYES, GENERATOR,
                                            GENERATOR_VERSION, LIPS_INNER, LIPS_OUTER, MOUTH_CORNERS, NECK,
                                            NUM_LANDMARKS, SKULL_AXES, SKULL_CENTRE, UPPER_INNER_LIP, UPPER_LIDS,
                                            SynthConfig, seeded_rng)
from pose3dfr.data.synthetic.head import HeadModel, build_head
from pose3dfr.data.synthetic.identity import (SHAPE_COMPONENTS, IdentityParams, TextureParams, apply_expression,
                                              identity_mask, sample_identity)
from pose3dfr.data.synthetic.texture import face_texture
from pose3dfr.data.synthetic.views import (HEAD_PIVOT, Nuisance, camera, render_head, render_identity_view,
                                           sample_face_points, sample_nuisance)

__all__ = [
    "BROWS_LOWER", "BROWS_UPPER", "CHEEKS", "EXPRESSIONS", "EYES", "GENERATOR", "GENERATOR_VERSION", "HEAD_PIVOT",
    "LIPS_INNER", "LIPS_OUTER", "MOUTH_CORNERS", "NECK", "NUM_LANDMARKS", "SHAPE_COMPONENTS", "SKULL_AXES",
    "SKULL_CENTRE", "UPPER_INNER_LIP", "UPPER_LIDS", "HeadModel", "IdentityParams", "Nuisance", "SynthConfig",
    "TextureParams", "apply_expression", "build_head", "camera", "face_texture", "generate_benchmark",
    "identity_mask", "render_head", "render_identity_view", "sample_face_points", "sample_identity",
    "sample_nuisance", "seeded_rng", "write_contact_sheet",
]
