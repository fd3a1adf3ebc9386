# Plain DPC on the embedded moving-shapes videos (CPU-sized). NDA variant: dpc_nda_moving_shapes.py.
model = dict(type="nda_plugins.DPC", num_blocks=4, pred_steps=2, dim=32, width=16)  # nda=None: plain DPC
train_dataloader = dict(
    dataset=dict(type="nda_plugins.MovingShapesVideo", num_clips=96, frames=8, size=32, seed=0),
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    batch_size=8,
    num_workers=0,
)
train_cfg = dict(by_epoch=True, max_epochs=4)
optim_wrapper = dict(optimizer=dict(type="Adam", lr=1e-3))
custom_hooks = [dict(type="nda_plugins.NDAHook")]
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=1),
    logger=dict(type="LoggerHook", interval=4),
)
model_wrapper_cfg = dict(type="nda_plugins.CPUDistributedDataParallel")
randomness = dict(seed=0)
work_dir = "work_dirs/dpc_moving_shapes"
