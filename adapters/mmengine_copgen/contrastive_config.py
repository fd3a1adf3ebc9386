# Contrastive training on (anchor, positive) pairs written by `launch.py generate`.
# positives='generated' uses COP-Gen's G(z') as the positive of G(z); 'augment' pairs each anchor
# with itself (two augmentations only). Set model.nda='jigsaw' for NDA negatives as extra
# InfoNCE negatives (nda_plugins.contrastive).
model = dict(
    type="nda_plugins.PairContrastive",
    encoder=dict(width=32, out_dim=64),
    temperature=0.1,
    augment=True,
    nda=None,
    nda_weight=None,
    seed=0,
)
train_dataloader = dict(
    dataset=dict(type="nda_plugins.PairDataset", data_root="./nda-runs/copgen/pairs", positives="generated"),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_size=64,
    num_workers=0,
)
train_cfg = dict(by_epoch=False, max_iters=300)
optim_wrapper = dict(optimizer=dict(type="Adam", lr=1e-3))
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=300, by_epoch=False),
    logger=dict(type="LoggerHook", interval=50),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
default_scope = "mmengine"
env_cfg = dict(dist_cfg=dict(backend="gloo"))
# Under torchrun (`--launcher pytorch`): works on CPU too; keeps a model's own train_step.
model_wrapper_cfg = dict(type="nda_plugins.CPUDistributedDataParallel")
work_dir = "./nda-runs/copgen/contrastive"
