"""Evaluation: verification metrics, the per-pose protocol, the calibration (threshold) format and reports.

`protocol` selects gallery/probe images, bins and pairs; `calibration` is the one module that writes and
reads thresholds and recorded TARs; `thresholds` decides a pair (its threshold, route and score);
`evaluate` runs a model over a data set; `reports` draws tables and ROCs.
"""
