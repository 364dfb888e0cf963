"""Face basics, the ground floor: safe image loading, alignment templates and `align_face`, the canonical
face mesh and head-pose angles. Everything that needs them imports down to here; this package imports
nothing above it."""
