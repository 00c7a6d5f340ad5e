"""``cxr evaluate``: metric functions (:mod:`.metrics`) and per-task evaluation of saved weights on records."""
