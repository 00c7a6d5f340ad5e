"""``cxr train``: configuration (:mod:`.config`), the loop (:mod:`.engine`), the four tasks (:mod:`.tasks`,
:mod:`.gan`), checkpoints, DDP helpers and export to the weights format. Imports torch: load lazily."""
