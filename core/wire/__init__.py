"""What crosses process boundaries: frames between frontends and workers (``framing``), the
started board (``started_board``), control messages to the manager (``control``) and the
routes table it publishes (``routes``), the last two typed dataclasses checked once on
decoding (``contracts``)."""
