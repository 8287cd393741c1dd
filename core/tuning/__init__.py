"""Process tuning shared by frontends and workers: busy polling, CPU scheduling, the garbage collector, socket buffers."""
