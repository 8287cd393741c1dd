"""What crosses process boundaries: frames between frontends and workers, the started board,
control messages to the manager and the routes table it publishes."""
