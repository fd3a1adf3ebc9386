# COP-Gen navigator training (mmengine config). Defaults follow COP-Gen: InfoNCE temperature 0.1,
# Adam(0.5, 0.999), lr 3e-5 (estimator) / 1e-5 (navigator). The generator defaults to a small
# DCGAN trained on the fly on procedural shapes; set model.generator to 'package.module:callable'
# or to a torch.save-d module file (and model.latent_dim if it has no z_dim attribute).
latent_dim = 32
model = dict(
    type="nda_plugins.COPGenNavigator",
    generator=None,
    generator_kwargs=dict(steps=300, size=32, z_dim=latent_dim),
    estimator=dict(width=32, out_dim=64),
    temperature=0.1,
    radius=0.5,
    consistency_weight=10.0,
    augment=True,
    seed=0,
)
train_dataloader = dict(
    dataset=dict(type="nda_plugins.LatentDataset", num_samples=100_000, latent_dim=latent_dim, seed=0),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_size=64,
    num_workers=0,
)
train_cfg = dict(by_epoch=False, max_iters=200)
optim_wrapper = dict(
    constructor="nda_plugins.SubmoduleOptimWrapperConstructor",
    estimator=dict(optimizer=dict(type="Adam", lr=3e-5, betas=(0.5, 0.999))),
    navigator=dict(optimizer=dict(type="Adam", lr=1e-5, betas=(0.5, 0.999))),
)
default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=100, by_epoch=False),
    logger=dict(type="LoggerHook", interval=20),
)
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
default_scope = "mmengine"
env_cfg = dict(dist_cfg=dict(backend="gloo"))
# Under torchrun (`--launcher pytorch`): works on CPU too; keeps a model's own train_step.
model_wrapper_cfg = dict(type="nda_plugins.CPUDistributedDataParallel")
work_dir = "./nda-runs/copgen/navigator"
