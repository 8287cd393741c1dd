"""An example hookserve plugin package."""
