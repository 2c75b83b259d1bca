# The run's safety, stated in the config so that every entry point runs the same experiment: the project's
# tools/train.py, `mim train`, mmdet's/mmseg's own tools/train.py and Runner.from_cfg(Config.fromfile(cfg)).
#
# Use: the config that first inherits a toolbox base (a recipe under configs/_base_/recipes/, or a standalone
# config) lists this file among its bases and states
#
#     default_hooks = _base_.safety_hooks
#
# (mmengine refuses a top-level key defined by two sibling bases, so this file cannot define `default_hooks`
# itself.) default_hooks is a dict merged by key: `checkpoint` keeps the base's interval / max_keep_ckpts and only
# changes the hook type; a config that sets its own `custom_hooks` list loses none of these.
# Every option below can be changed per run: --cfg-options default_hooks.<key>.<option>=<value>.
# What each does, and what the user sees: docs/robustness.md.
safety_hooks = dict(
    # atomic, fsynced checkpoint writes; old checkpoints deleted last; resume from the newest complete one; a
    # failed write (disk full, read-only folder) stops with one line naming the last complete checkpoint
    checkpoint=dict(type='SafeCheckpointHook'),
    # stop at the first NaN/Inf loss, naming the iteration and terms; never save the broken weights
    nan_guard=dict(type='NonFiniteLossHook'),
    # load_from / resume / test checkpoints through the one strict loading policy (official layouts converted,
    # kernels padded, any mismatch named)
    checkpoint_loading=dict(type='CheckpointLoadingHook'),
    # SIGTERM / SIGUSR1 (preemption, SLURM's --signal): finish the iteration, write a checkpoint, exit 75;
    # --resume continues from it exactly
    preemption=dict(type='PreemptionHook', signals=['SIGTERM', 'SIGUSR1']),
    # one training per work dir (lock file run.lock naming the holder); a second run stops with one line, or,
    # with on_conflict='subfolder', trains in <work_dir>/<timestamp>/
    work_dir_lock=dict(type='WorkDirLockHook', on_conflict='refuse'),
    # a sample that fails to load / transform is named (its files, one line); on_error='skip' skips and counts
    data_errors=dict(type='DataErrorsHook', on_error='raise', max_skips=None),
    # the heads' num_classes must equal the dataset's class count (allow_mismatch=True for deliberate cases)
    consistency=dict(type='ClassConsistencyHook', allow_mismatch=False),
)
