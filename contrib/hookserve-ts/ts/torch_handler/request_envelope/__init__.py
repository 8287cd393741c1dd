"""``ts.torch_handler.request_envelope``: wrappers that unwrap request bodies and wrap replies.

hookserve does not apply an envelope from the server config (``service_envelope``); a
handler uses one by wrapping its own ``handle``: ``JSONEnvelope(super().handle).handle(data, context)``.
"""
