# DPC with NDA video negatives: one jigsaw draw per clip shared by its frames, w = 0.5.
_base_ = ["./dpc_moving_shapes.py"]
model = dict(nda=dict(transform="jigsaw:grid=2", weight=0.5, schedule="constant", seed=0))
work_dir = "work_dirs/dpc_nda_moving_shapes"
