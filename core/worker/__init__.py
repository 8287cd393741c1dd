"""A model worker: one process forked by the manager, serving one model version on one device."""
